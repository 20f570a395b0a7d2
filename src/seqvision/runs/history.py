"""history.csv, the one row per epoch that a run records, and curves.png drawn from it.

This is the only module that reads or writes the file; training appends to it, reports and comparisons read it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from seqvision.atomic import write_text_atomic
from seqvision.figures import pyplot, save_figure
from seqvision.tables import csv_text

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")
HistoryRow = dict[str, str]


def read_history(path: Path) -> list[HistoryRow]:
    """The rows of a history.csv, or none when the file does not exist yet."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_history(path: Path, rows: Sequence[HistoryRow]) -> None:
    write_text_atomic(path, csv_text(HISTORY_COLUMNS, ([row.get(name, "") for name in HISTORY_COLUMNS]
                                                       for row in rows)))


def format_epoch_line(row: HistoryRow, max_epochs: int) -> str:
    """The one line printed per epoch when no progress bar is shown."""

    def pct(name: str) -> str:
        return f"{100 * float(row[name]):.2f}%" if row.get(name) else "-"

    return (f"epoch {row['epoch']}/{max_epochs}  train loss {float(row['train_loss']):.4f} acc {pct('train_acc')}"
            f"  val loss {float(row.get('val_loss') or 'nan'):.4f} acc {pct('val_acc')}"
            f"  lr {row['lr']}  {row['seconds']}s")


def plot_history(rows: Sequence[HistoryRow], path: Path) -> None:
    """Loss and accuracy per epoch, training against validation, side by side (as seed 002 plots them)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [int(row["epoch"]) for row in rows]

    def series(name: str) -> list[float]:
        return [float(row[name]) if row.get(name) else float("nan") for row in rows]

    figure, (loss_axes, acc_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, metric, label in ((loss_axes, "loss", "loss"), (acc_axes, "acc", "accuracy")):
        axes.plot(epochs, series(f"train_{metric}"), marker="o", label=f"training {label}")
        axes.plot(epochs, series(f"val_{metric}"), marker="o", label=f"validation {label}")
        axes.set_title(f"Training and validation {label}")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no tick at 1.5
        axes.grid(alpha=0.3)
        axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
