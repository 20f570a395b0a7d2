"""Pictures of a run, drawn with matplotlib's file backend (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seqvision.atomic import atomic_path


def plot_training_curves(rows: Sequence[dict[str, str]], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation, side by side (as seed 002 plots them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [int(row["epoch"]) for row in rows]

    def series(name: str) -> list[float]:
        return [float(row[name]) if row.get(name) else float("nan") for row in rows]

    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for axes, metric, label in ((loss_axes, "loss", "loss"), (acc_axes, "acc", "accuracy")):
        axes.plot(epochs, series(f"train_{metric}"), marker="o", label=f"training {label}")
        axes.plot(epochs, series(f"val_{metric}"), marker="o", label=f"validation {label}")
        axes.set_title(f"Training and validation {label}")
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
