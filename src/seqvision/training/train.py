"""`seqvision.train`: dataset -> batches -> model -> Lightning fit -> run folder with test metrics."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from seqvision import __version__
from seqvision.atomic import write_json_atomic, write_text_atomic
from seqvision.config import TrainConfig
from seqvision.data import get_dataset, load_dataset
from seqvision.errors import ConfigError, TrainingDivergedError, TrainingInterruptedError
from seqvision.evaluation.evaluate import evaluate_model, load_checkpoint_model
from seqvision.evaluation.summary import model_summary
from seqvision.models import build_model, resolve_model_options
from seqvision.training.batching import split_batches
from seqvision.training.callbacks import AtomicCheckpointIO, EpochHistory, InterruptCheckpoint
from seqvision.training.module import ClassifierModule
from seqvision.training.run_folder import RunFolder

RESUME_OVERRIDES = frozenset({"epochs", "data_dir", "accelerator"})


@dataclass
class TrainResult:
    run_dir: Path
    test_metrics: dict[str, Any]
    epochs_trained: int


def train(config: TrainConfig | None = None, *, out: str | os.PathLike[str] | None = None,
          resume: str | os.PathLike[str] | None = None, progress: bool = True,
          callbacks: Sequence[L.Callback] = (), report: bool = True, **overrides: Any) -> TrainResult:
    """Train a model and write a run folder; returns where it went and its test metrics.

    With `report`, the run folder also gets the full evaluation report (report.html, metrics.json, plots/).
    `overrides` are TrainConfig fields (`train(model="lstm", dataset="digits", epochs=5)`). With `resume`,
    the run folder's saved config is used and only epochs, data_dir and accelerator may change.
    Raises a SeqvisionError subclass, before any training, for every input it can check.
    """
    if resume is not None:
        run = RunFolder.open(resume)
        refused = sorted(set(overrides) - RESUME_OVERRIDES) + (["config"] if config is not None else [])
        if refused:
            raise ConfigError(f"--resume continues a run with its saved configuration; {refused} cannot change. "
                              f"Only {sorted(RESUME_OVERRIDES)} can.")
        config = dataclasses.replace(run.load_config(), **overrides).validate()
        checkpoint = run.resume_checkpoint()
        trained = run.read_info().get("epochs_trained", 0)
        if trained >= config.epochs:
            raise ConfigError(f"{run.path} has already trained {trained} of its {config.epochs} epochs; "
                              f"pass --epochs N with N > {trained} to train it further.")
    else:
        config = resolve_model_options(dataclasses.replace(config or TrainConfig(), **overrides).validate())
        run_path = Path(out) if out is not None else RunFolder.default_path(config)
        RunFolder.check_can_create(run_path)
        checkpoint = None
    spec = get_dataset(config.dataset)
    accelerator = _resolve_accelerator(config.accelerator)

    splits = load_dataset(spec.name, config.data_dir)
    batches = split_batches(config, splits)
    L.seed_everything(config.seed, verbose=False)
    model = build_model(config, splits.image_shape, splits.num_classes)
    run_info = {"seqvision_version": __version__, "image_shape": list(splits.image_shape),
                "num_classes": splits.num_classes, "dataset_source": splits.source,
                "normalisation": dataclasses.asdict(batches.normalisation)}
    if resume is None:
        run = RunFolder.create(run_path, {**run_info, "status": "running"})
        config.save(run.config_path)
        write_text_atomic(run.summary_path, model_summary(model, splits.image_shape))
    else:
        config.save(run.config_path)
        run.update_info(status="running")

    module = ClassifierModule(model, config, run_info)
    try:
        with _quiet_lightning():
            trainer = _build_trainer(config, accelerator, run, progress, callbacks)
            trainer.fit(module, batches.train, batches.val, ckpt_path=checkpoint)
    except SystemExit as stop:  # Lightning turns Ctrl-C into sys.exit(1) after our on_exception hook ran
        run.update_info(status="interrupted")
        raise TrainingInterruptedError(f"training interrupted; a resumable checkpoint is in {run.checkpoints_dir}. "
                                       f"Continue with: seqvision train --resume {run.path}") from stop
    except TrainingDivergedError as error:
        run.update_info(status="diverged")
        kept = [p.name for p in sorted(run.checkpoints_dir.glob("*.ckpt"))]
        raise TrainingDivergedError(f"{error} Checkpoints from before it are kept in {run.checkpoints_dir}: "
                                    f"{', '.join(kept) or 'none (it diverged in the first epoch)'}.") from None

    best, where = load_checkpoint_model(run, "best")
    metrics = {**where, **evaluate_model(best, batches.test, _eval_device(trainer))}
    write_json_atomic(run.test_metrics_path, metrics)
    run.checkpoint("interrupted").unlink(missing_ok=True)
    run.update_info(status="finished", epochs_trained=trainer.current_epoch)
    if report:
        from seqvision.evaluation.report import write_report

        write_report(run.path, data_dir=config.data_dir)
    return TrainResult(run.path, metrics, trainer.current_epoch)


def _resolve_accelerator(requested: str) -> str:
    """'cpu' or 'gpu': auto falls back to the CPU when no CUDA device is visible."""
    if requested == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu was asked for but no CUDA GPU is visible; use auto or cpu.")
    return "gpu" if requested != "cpu" and torch.cuda.is_available() else "cpu"


def _build_trainer(config: TrainConfig, accelerator: str, run: RunFolder, progress: bool,
                   extra_callbacks: Sequence[L.Callback]) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    interactive = progress and sys.stderr.isatty()
    callbacks: list[L.Callback] = [
        ModelCheckpoint(dirpath=run.checkpoints_dir, filename="best", monitor="val_loss", mode="min",
                        save_last=True, enable_version_counter=False),
        EpochHistory(run.history_path, run.curves_path, echo=progress and not interactive),
        InterruptCheckpoint(run.checkpoint("interrupted")),
    ]
    if config.early_stop:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=config.early_stop))
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=1,
        # cuDNN's LSTM has no deterministic mode; on the CPU every kernel is deterministic.
        deterministic=True if accelerator == "cpu" else "warn",
        gradient_clip_val=config.clip_grad or None,
        callbacks=[*callbacks, *extra_callbacks],
        plugins=[AtomicCheckpointIO()],
        logger=False,
        default_root_dir=run.path,
        enable_progress_bar=interactive,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _eval_device(trainer: L.Trainer) -> torch.device:
    return trainer.strategy.root_device


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banners (device tables, tips); its warnings and errors still show."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates; nothing for users to do.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            # A resumed run writes into its own checkpoint folder on purpose.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            yield
    finally:
        logger.setLevel(level)

