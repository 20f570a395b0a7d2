"""Lightning callbacks and plugins that keep the run folder complete and safe to crash in."""

from __future__ import annotations

import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from seqvision.atomic import atomic_path, write_text_atomic

HISTORY_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint under a temporary name and rename it, so a crash never leaves a torn file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


class InterruptCheckpoint(L.Callback):
    """On Ctrl-C, save a resumable checkpoint before Lightning shuts down."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            trainer.save_checkpoint(self.path)


class EpochHistory(L.Callback):
    """Append one row per epoch to history.csv, redraw the curves, and optionally print a one-line summary.

    On resume, rows of epochs that are about to be trained again are dropped first.
    """

    def __init__(self, history_path: Path, curves_path: Path, *, echo: bool) -> None:
        self.history_path = history_path
        self.curves_path = curves_path
        self.echo = echo
        self.rows: list[dict[str, str]] = []
        self._epoch_started = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.history_path.is_file():
            with open(self.history_path, newline="") as handle:
                self.rows = [row for row in csv.DictReader(handle) if int(row["epoch"]) <= trainer.current_epoch]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        values = {name: float(metrics[name]) for name in HISTORY_COLUMNS[1:5] if name in metrics}
        row = {
            "epoch": str(trainer.current_epoch + 1),
            **{name: f"{value:.6f}" for name, value in values.items()},
            "lr": f"{trainer.optimizers[0].param_groups[0]['lr']:.6g}",
            "seconds": f"{time.perf_counter() - self._epoch_started:.2f}",
        }
        self.rows.append(row)
        self._write()
        from seqvision.evaluation.plots import plot_training_curves

        plot_training_curves(self.rows, self.curves_path)
        if self.echo:
            print(format_epoch_line(row, trainer.max_epochs), file=sys.stderr, flush=True)

    def _write(self) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.history_path, buffer.getvalue())


def format_epoch_line(row: dict[str, str], max_epochs: int) -> str:
    def pct(name: str) -> str:
        return f"{100 * float(row[name]):.2f}%" if row.get(name) else "-"

    return (f"epoch {row['epoch']}/{max_epochs}  train loss {float(row['train_loss']):.4f} acc {pct('train_acc')}"
            f"  val loss {float(row.get('val_loss') or 'nan'):.4f} acc {pct('val_acc')}"
            f"  lr {row['lr']}  {row['seconds']}s")
