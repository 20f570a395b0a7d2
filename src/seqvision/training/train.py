"""`train_model`: dataset -> batches -> model -> Lightning fit -> a run folder with its checkpoints and history.

Testing the trained model is not done here: `seqvision.train` (seqvision.experiments.train_test) asks
for it, from the batches this returns, so a run loads its data and predicts its test set once.
"""

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
from seqvision.atomic import write_text_atomic
from seqvision.config import TrainConfig
from seqvision.data import get_dataset, load_dataset
from seqvision.data.batches import RunBatches, split_batches
from seqvision.data.folder import with_run_split, write_split_file
from seqvision.data.registry import augment_shift
from seqvision.errors import ConfigError, DiskFullError, TrainingDivergedError, TrainingInterruptedError
from seqvision.models import build_model, get_model_entry, resolve_model_options
from seqvision.models.fused import build_for
from seqvision.models.summary import model_summary
from seqvision.runs.checkpoint import describe, description_of, read_checkpoint, warn_if_history_is_ahead
from seqvision.runs.folder import RunFolder
from seqvision.training.callbacks import (
    AtomicCheckpointIO,
    BatchProgressBar,
    EpochHistory,
    NullProfiler,
    StopAtBatchBoundary,
)
from seqvision.training.datamodule import InMemoryDataModule
from seqvision.training.distributed import (
    AgreeOnRunFolder,
    build_strategy,
    check_launch,
    is_peer_failure,
    launch_rank,
    peer_lost,
    world_size,
)
from seqvision.training.module import ClassifierModule

# The process count is not among them: it sets the global batch, and a checkpoint's place in an epoch counts
# global batches.
RESUME_OVERRIDES = frozenset({"epochs", "data_dir", "accelerator", "dist_timeout"})


@dataclass
class TrainedRun:
    """A run folder whose training ended, with the batches it used and the device it ran on."""

    run: RunFolder
    config: TrainConfig
    batches: RunBatches
    device: torch.device
    epochs_trained: int
    # False on the other processes of a distributed run: they train but write nothing.
    writes_run_folder: bool = True


def train_model(config: TrainConfig | None = None, *, out: str | os.PathLike[str] | None = None,
                resume: str | os.PathLike[str] | None = None, progress: bool = True,
                callbacks: Sequence[L.Callback] = (), **overrides: Any) -> TrainedRun:
    """Train a model into a new run folder, or continue the one at `resume`; see seqvision.train.

    Under distributed training every process calls this; process 0 alone writes the run folder."""
    if resume is not None:
        run = RunFolder.open(resume)
        refused = sorted(set(overrides) - RESUME_OVERRIDES) + (["config"] if config is not None else [])
        if refused:
            raise ConfigError(f"--resume continues a run with its saved configuration; {refused} cannot change. "
                              f"Only {sorted(RESUME_OVERRIDES)} can.")
        config = dataclasses.replace(run.load_config(), **overrides).validate()
    else:
        config = resolve_model_options(dataclasses.replace(config or TrainConfig(), **overrides).validate())
        run = RunFolder(Path(out) if out is not None else RunFolder.default_path(config))
    check_launch(config)
    with _deterministic_mode_without_memory_fill():
        return _train(config, run, resume, progress, callbacks)


def _train(config: TrainConfig, run: RunFolder, resume: str | os.PathLike[str] | None, progress: bool,
           callbacks: Sequence[L.Callback]) -> TrainedRun:
    accelerator = _resolve_accelerator(config.accelerator)
    # The saved config holds what the run used, so a resume or a rerun elsewhere repeats it.
    config = dataclasses.replace(config, precision=resolve_precision(config, accelerator),
                                 augment_shift=augment_shift(config))
    stopper, agreed = StopAtBatchBoundary(run.checkpoint("interrupted")), AgreeOnRunFolder(run.path)
    with _quiet_lightning():
        trainer = _build_trainer(config, accelerator, run, progress, [stopper, agreed, *callbacks])
    leader = launch_rank(trainer) == 0
    if resume is None and leader:
        RunFolder.check_can_create(run.path)
    # A resumed folder dataset reads the run's own split.json: the same pictures, even if the folder has changed.
    data_config = with_run_split(config, run.path) if resume is not None else config
    spec = get_dataset(config.dataset, data_config)
    splits = load_dataset(spec.name, config.data_dir, data_config)
    batches = split_batches(config, splits)
    classes = spec.classes
    description = describe(config, splits.image_shape, classes, batches.normalisation)

    if resume is None and leader:
        run = RunFolder.create(run.path, {"seqvision_version": __version__, "status": "running",
                                          "image_shape": list(splits.image_shape), "num_classes": len(classes),
                                          "classes": list(classes), "dataset_source": splits.source,
                                          "normalisation": description["normalisation"]})
        write_split_file(splits, run.path)
    image_shape = splits.image_shape
    # The batches copied out the images they use; the dataset as loaded would stay resident through training.
    del splits
    with run.lock() if leader else contextlib.nullcontext():
        checkpoint = None
        if resume is not None:
            checkpoint = run.resume_checkpoint()
            saved = read_checkpoint(checkpoint)  # a damaged or foreign file is refused here, in seqvision's words
            trained = run.read_info().get("epochs_trained", 0)
            if trained >= config.epochs:
                raise ConfigError(f"{run.path} has already trained {trained} of its {config.epochs} epochs; "
                                  f"pass --epochs N with N > {trained} to train it further.")
            if leader and checkpoint == run.checkpoint("last"):
                warn_if_history_is_ahead(run, checkpoint, description_of(saved, checkpoint).epoch,
                                         "Resuming trains them again.")
        L.seed_everything(config.seed, verbose=False)
        model = build_model(config, image_shape, len(classes))
        if accelerator == "cpu":
            build_for(model)
        if config.memory_format == "channels-last":
            # Only 4-D tensors change layout, so only convolution weights; checkpoints load into either layout.
            model = model.to(memory_format=torch.channels_last)
        if leader:
            config.save(run.config_path)
            if resume is None:
                write_text_atomic(run.summary_path, model_summary(model, image_shape))
            run.update_info(status="running", world_size=world_size(config))
        _fit(trainer, ClassifierModule(model, config, description), InMemoryDataModule(batches), checkpoint,
             run, stopper, leader)
        if leader:
            run.checkpoint("interrupted").unlink(missing_ok=True)
            run.update_info(status="finished", epochs_trained=trainer.current_epoch)
        if stopper.requested:  # Ctrl-C after the last batch: the run is complete, but what called it must stop
            raise TrainingInterruptedError(f"interrupted as training ended: {run.path} finished its "
                                           f"{trainer.current_epoch} epochs, so there is nothing to resume.")
    return TrainedRun(RunFolder(agreed.path), config, batches, trainer.strategy.root_device, trainer.current_epoch,
                      leader)


def _fit(trainer: L.Trainer, module: ClassifierModule, data: InMemoryDataModule, checkpoint: Path | None,
         run: RunFolder, stopper: StopAtBatchBoundary, leader: bool) -> None:
    """Lightning's fit, with each way it can stop turned into the run's status and a message saying what next."""

    def record(status: str) -> None:
        if leader:
            run.update_info(status=status)

    try:
        with _quiet_lightning(), stopper.listening():
            trainer.fit(module, datamodule=data, ckpt_path=checkpoint, weights_only=True)
    except TrainingInterruptedError:
        record("interrupted")
        raise TrainingInterruptedError(f"training interrupted; a resumable checkpoint is in {run.checkpoints_dir}. "
                                       f"Continue with: seqvision train --resume {run.path}") from None
    except SystemExit as stop:  # a second Ctrl-C: Lightning turns the KeyboardInterrupt into sys.exit(1)
        record("interrupted")
        raise TrainingInterruptedError(f"training stopped at once; the last end-of-epoch checkpoint is in "
                                       f"{run.checkpoints_dir}. Continue with: seqvision train --resume {run.path}"
                                       ) from stop
    except TrainingDivergedError as error:
        record("diverged")
        kept = [p.name for p in sorted(run.checkpoints_dir.glob("*.ckpt"))]
        raise TrainingDivergedError(f"{error} Checkpoints from before it are kept in {run.checkpoints_dir}: "
                                    f"{', '.join(kept) or 'none (it diverged in the first epoch)'}.") from None
    except DiskFullError as error:
        with contextlib.suppress(OSError):  # run.json may not fit on the full disk either
            record("disk full")
        if any(run.checkpoint(name).is_file() for name in ("last", "interrupted")):
            advice = f"Free some space, then continue with: seqvision train --resume {run.path}"
        else:
            advice = f"No epoch had been saved yet: free some space, delete {run.path} and train again."
        raise DiskFullError(f"{error} {advice}") from None
    except Exception as error:
        if not is_peer_failure(error):
            raise
        record("peer lost")
        raise peer_lost(error, trainer, module.config, run.path) from None


def _resolve_accelerator(requested: str) -> str:
    """'cpu' or 'gpu': auto falls back to the CPU when no CUDA device is visible."""
    if requested == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--accelerator gpu was asked for but no CUDA GPU is visible; use auto or cpu.")
    return "gpu" if requested != "cpu" and torch.cuda.is_available() else "cpu"


def resolve_precision(config: TrainConfig, accelerator: str) -> str:
    """'32' or 'bf16': on the CPU, auto picks bf16 where it computes in bfloat16 natively (AVX-512 BF16 or AMX),
    which halved the LSTM's step at an unchanged accuracy (docs/results.md), except for the models whose steps bf16
    does not shorten (ModelEntry.cpu_autocast_pays); elsewhere bf16 would be emulated, slower than float32. On a
    GPU auto is float32: on an H100, bf16 autocast lengthened the step of every row-reading model at batch 128 and
    1024 (1.15x to 1.58x), models too small for its casts to pay (benchmarks/gpu_suite.py, docs/benchmarks.md)."""
    if config.precision != "auto":
        return config.precision
    if accelerator == "gpu":
        return "32"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native and get_model_entry(config.model).cpu_autocast_pays(config) else "32"


def _build_trainer(config: TrainConfig, accelerator: str, run: RunFolder, progress: bool,
                   extra_callbacks: Sequence[L.Callback]) -> L.Trainer:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar

    interactive = progress and sys.stderr.isatty()
    callbacks: list[L.Callback] = [
        # best.ckpt, the epoch of the lowest validation loss, then last.ckpt, the end of every epoch: a callback of
        # its own, as Lightning's save_last writes last.ckpt only in an epoch that saved a best one (since 2.6).
        # Lightning runs checkpoint callbacks last, in this order, so both are saved after EpochHistory has
        # written the epoch's row (a run killed at any moment has a last.ckpt whose epochs are all in
        # history.csv), and last.ckpt holds the best checkpoint's record as of its epoch.
        ModelCheckpoint(dirpath=run.checkpoints_dir, filename="best", monitor="val_loss", mode="min",
                        enable_version_counter=False, save_on_train_epoch_end=True),
        ModelCheckpoint(dirpath=run.checkpoints_dir, filename="last", enable_version_counter=False,
                        save_on_train_epoch_end=True),
        EpochHistory(run.history_path, run.curves_path, echo=progress and not interactive),
    ]
    if config.early_stop:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=config.early_stop))
    if interactive and not any(isinstance(callback, ProgressBar) for callback in extra_callbacks):
        # Redrawn after every group of batches: Lightning's default bar redraws its line after every batch, which
        # cost about 7% of a default LSTM step.
        callbacks.append(BatchProgressBar())
    return L.Trainer(
        max_epochs=config.epochs,
        accelerator=accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=build_strategy(config, accelerator),
        # cuDNN's LSTM has no deterministic mode; on the CPU every kernel is deterministic.
        deterministic=True if accelerator == "cpu" else "warn",
        precision="bf16-mixed" if config.precision == "bf16" else "32-true",
        callbacks=[*extra_callbacks, *callbacks],
        plugins=[AtomicCheckpointIO()],
        profiler=NullProfiler(),
        # history.csv is written by EpochHistory: Lightning's CSVLogger puts train and validation metrics on
        # separate rows and cannot carry a half-finished epoch's totals across a resume, and LearningRateMonitor
        # only reports to a logger (the rate is a column of history.csv).
        logger=False,
        default_root_dir=run.path,
        enable_progress_bar=interactive,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


@contextlib.contextmanager
def _deterministic_mode_without_memory_fill() -> Iterator[None]:
    """Train in the deterministic mode that Lightning's `deterministic` switches on, minus its NaN fill of every
    newly allocated tensor, and give the caller's process back its own settings afterwards.

    The fill only exposes kernels that read memory they never wrote; it changes no result of a correct kernel, and
    it cost a fifth of an LSTM training step (oneDNN allocates a workspace per call). Deterministic mode itself,
    which refuses nondeterministic kernels, stays on while training. Lightning leaves it on for good: evaluating
    afterwards would pay the fill, and a user's own code after `seqvision.train` would be refused
    nondeterministic kernels it never asked to give up."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banners (device tables, tips, each process joining); its warnings and errors
    still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning 2.6 calls a torch.utils._pytree API that torch 2.13 deprecates; nothing for users to do.
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            # A resumed run writes into its own checkpoint folder on purpose.
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
