"""Lightning callbacks and plugins that keep the run folder complete, exact to resume, and safe to crash in, and
the profiler that keeps Lightning's hooks cheap."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.profilers import Profiler

from seqvision.errors import TrainingInterruptedError
from seqvision.runs.checkpoint import write_checkpoint
from seqvision.runs.history import format_epoch_line, plot_history, read_history, write_history
from seqvision.training.datamodule import BatchGroup
from seqvision.training.distributed import reduce_sum


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through seqvision's: temporary name then rename, and a full disk said as such."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        write_checkpoint(checkpoint, path)


class NullProfiler(Profiler):
    """Profiles nothing, at no cost per hook.

    Lightning's default, PassThroughProfiler, also records nothing, but still enters a new generator-based
    context manager around each of the dozens of hooks and callbacks it calls in a training step; this hands
    back one shared empty context instead (docs/benchmarks.md: framework overhead)."""

    _NOTHING = contextlib.nullcontext()

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def profile(self, action_name: str) -> contextlib.nullcontext:
        return self._NOTHING


class BatchProgressBar(TQDMProgressBar):
    """Lightning's bar, counting the epoch's training batches where Lightning counts the groups it hands over
    (training/datamodule.py: BatchGroups)."""

    @property
    def total_train_batches(self) -> int:
        return len(self.trainer.train_dataloader.batches)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: BatchGroup,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch.end - 1)


class StopAtBatchBoundary(L.Callback):
    """Ctrl-C (SIGINT) asks training to stop where every piece of state agrees: before the next group of batches
    starts (training/datamodule.py: BatchGroups), at most BATCHES_PER_GROUP optimiser steps later.

    A KeyboardInterrupt raised wherever Python happens to be can land inside an optimiser step, between the
    weights and the batch counter, and a checkpoint taken then resumes to a different run. So the first
    Ctrl-C only sets a flag; before the next group touches anything, this saves `checkpoint_path` and raises
    TrainingInterruptedError. A second Ctrl-C interrupts at once (resume then starts from the last
    end-of-epoch checkpoint). Lightning's OnExceptionCheckpoint is not used for this: it saves on any
    exception (a NaN loss, a full disk: states that must not be resumed), and with it in the trainer every
    later fit(ckpt_path=None) resumes from the newest checkpoint in its folder."""

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = checkpoint_path
        self.requested = False

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Route SIGINT to this callback while the block runs (main thread only), and restore it afterwards,
        whatever Lightning did to it on the way out."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._request)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _request(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this group of batches (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # Every process stops at the same batch, or the others would wait for it in their next collective.
        if trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            trainer.save_checkpoint(self.checkpoint_path)
            raise TrainingInterruptedError(f"training interrupted in epoch {trainer.current_epoch + 1} "
                                           f"after step {trainer.global_step}")


class EpochHistory(L.Callback):
    """Append one row per epoch to history.csv, keep curves.png drawn from it, and optionally print a one-line
    summary.

    Drawing the curves takes matplotlib about 0.15 s of CPU, 3% of a default LSTM epoch on MNIST, so they are
    redrawn once `REDRAW_SECONDS` have passed since the last drawing, and always when training ends or stops.

    The epoch's running totals (loss, correct predictions, images, seconds) are part of every checkpoint, so
    an epoch resumed in its middle records the same row as if it had never stopped. On resume, rows of
    epochs about to be trained again are dropped first."""

    REDRAW_SECONDS = 30.0

    def __init__(self, history_path: Path, curves_path: Path, *, echo: bool) -> None:
        self.history_path = history_path
        self.curves_path = curves_path
        self.echo = echo
        self.rows: list[dict[str, str]] = []
        self.totals = self._empty(epoch=0)
        self._started = time.perf_counter()
        self._drawn_rows: list[dict[str, str]] | None = None
        self._drawn_at = time.perf_counter()

    @staticmethod
    def _empty(epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "loss_sum": 0.0, "correct": 0, "count": 0, "seconds": 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {**self.totals, "seconds": self.totals["seconds"] + time.perf_counter() - self._started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals = dict(state)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = [row for row in read_history(self.history_path) if int(row["epoch"]) <= trainer.current_epoch]
        self._drawn_at = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.totals["epoch"] != trainer.current_epoch:
            self.totals = self._empty(trainer.current_epoch)
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # float64 sums, added batch by batch: the same total whether an epoch ran in one go or was resumed halfway.
        # Summed over all processes after every group of batches, so every process holds the global totals and
        # any checkpoint carries them.
        *loss_sums, correct, count = reduce_sum(trainer, [*outputs["loss_sums"], outputs["correct"],
                                                          outputs["count"]])
        for loss_sum in loss_sums:
            self.totals["loss_sum"] += loss_sum
        self.totals["correct"] += int(correct)
        self.totals["count"] += int(count)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        totals, metrics = self.state_dict(), trainer.callback_metrics
        row = {
            "epoch": str(trainer.current_epoch + 1),
            "train_loss": f"{totals['loss_sum'] / totals['count']:.6f}",
            "train_acc": f"{totals['correct'] / totals['count']:.6f}",
            **{name: f"{float(metrics[name]):.6f}" for name in ("val_loss", "val_acc") if name in metrics},
            "lr": f"{trainer.optimizers[0].param_groups[0]['lr']:.6g}",
            "seconds": f"{totals['seconds']:.2f}",
        }
        self.rows.append(row)
        write_history(self.history_path, self.rows)
        if time.perf_counter() - self._drawn_at >= self.REDRAW_SECONDS:
            self._draw_curves()
        if self.echo:
            print(format_epoch_line(row, trainer.max_epochs), file=sys.stderr, flush=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._draw_curves()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        # Best effort: a failure to draw (a full disk, say) must not hide the error that stopped training.
        if trainer.is_global_zero:
            with contextlib.suppress(OSError):
                self._draw_curves()

    def _draw_curves(self) -> None:
        if self.rows and self.rows != self._drawn_rows:
            plot_history(self.rows, self.curves_path)
            self._drawn_rows = list(self.rows)
        self._drawn_at = time.perf_counter()


def follow_moved_run_folder(checkpoint: dict[str, Any], current: ModelCheckpoint) -> None:
    """Point the saved state of one of the run's ModelCheckpoints (best.ckpt's or last.ckpt's) at `current.dirpath`
    when the run folder has moved since the checkpoint was saved (renamed, or copied from another machine).
    Lightning would keep only the best checkpoint's old path and forget its score, so the next epoch would be saved
    as best.ckpt whatever its loss."""
    state = checkpoint.get("callbacks", {}).get(current.state_key)
    if state is None or state.get("dirpath") in (None, current.dirpath):
        return
    saved = state["dirpath"]

    def moved(path: str | None) -> str | None:
        return os.path.join(current.dirpath, os.path.relpath(path, saved)) if path else path

    state.update(dirpath=current.dirpath, best_model_path=moved(state.get("best_model_path")),
                 kth_best_model_path=moved(state.get("kth_best_model_path")),
                 last_model_path=moved(state.get("last_model_path")),
                 best_k_models={moved(path): score for path, score in state.get("best_k_models", {}).items()})
