"""matplotlib without a display, and figures saved atomically: shared by the run's curves and the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqvision.atomic import atomic_path

DPI = 100


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    pyplot().close(figure)
