"""Checkpoint files: written whole or not at all, read without unpickling code, and enough on their own to
rebuild their model.

A checkpoint is the dictionary Lightning saves (weights under "state_dict", optimiser and loop state) plus
a "seqvision" section that describes it. The weights are those being trained ("model.*"), and for a run with
--ema-decay also their moving average ("averaged.*"), which is then the model a checkpoint rebuilds.

    format          CHECKPOINT_FORMAT, refused when newer than this version reads
    model, config   the model's name and every option of the TrainConfig it was trained with
    image_shape     (height, width) of the images it reads
    classes         class names, index i being logit i
    normalisation   the mean and std its inputs were standardised with
    random_state    every random generator's state at the moment it was saved, for an exact resume

Nothing here imports Lightning: evaluation, export and serving read checkpoints through this module.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqvision.atomic import write_bytes_atomic
from seqvision.config import TrainConfig
from seqvision.data.batches import Normalisation
from seqvision.errors import CheckpointError, ConfigError, DiskFullError, RunFolderError, SeqvisionWarning
from seqvision.runs.folder import RunFolder
from seqvision.runs.history import read_history

CHECKPOINT_FORMAT = 1
SECTION = "seqvision"
MODEL_PREFIX = "model."
AVERAGED_PREFIX = "averaged."


@dataclass(frozen=True)
class CheckpointDescription:
    """What a checkpoint says about itself: enough to rebuild its model and feed it images."""

    config: TrainConfig
    image_shape: tuple[int, int]
    classes: tuple[str, ...]
    normalisation: Normalisation
    epoch: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def describe(config: TrainConfig, image_shape: tuple[int, int], classes: tuple[str, ...],
             normalisation: Normalisation) -> dict[str, Any]:
    """The "seqvision" section of a checkpoint, less its random state (added at the moment of saving)."""
    from seqvision import __version__

    return {"format": CHECKPOINT_FORMAT, "seqvision_version": __version__, "model": config.model,
            "config": config.to_dict(), "image_shape": list(image_shape), "classes": list(classes),
            "normalisation": {"mean": normalisation.mean, "std": normalisation.std}}


def capture_random_state() -> dict[str, Any]:
    """Every generator a training step can draw from (dropout uses torch's), in a form torch.load accepts
    with weights_only=True: tensors, lists and numbers, no numpy objects."""
    numpy_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Serialise in memory, then write under a temporary name and rename: a crash or a full disk leaves the
    previous file under `path` as it was, and a full disk is reported as such."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getbuffer()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_bytes_atomic(path, data)
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        free = shutil.disk_usage(path.parent).free
        kept = "the file already there is intact" if path.exists() else "nothing was written under that name"
        raise DiskFullError(f"the disk is full: writing checkpoint {path} needs {_mib(len(data))} and "
                            f"{path.parent} has {_mib(free)} free; {kept}.") from None


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint with torch.load(weights_only=True) and check that seqvision wrote it.

    Every failure becomes one CheckpointError line that names the file and the cause. Files that hold
    pickled code are refused, never loaded another way."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # torch warns about foreign pickle protocols before failing on them; the refusal below says it all.
            warnings.simplefilter("ignore", UserWarning)
            saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist.") from None
    except Exception as error:  # torch raises many types for foreign or damaged files; each becomes one line
        raise CheckpointError(f"cannot read checkpoint {path}: {_unreadable_because(error, path)}. Use a checkpoint "
                              "that `seqvision train` wrote (a run's last.ckpt if this one was cut short).") from None
    if not isinstance(saved, dict) or not isinstance(saved.get(SECTION), dict) or "state_dict" not in saved:
        raise CheckpointError(f"{path} is a PyTorch file but not a seqvision checkpoint (it has no seqvision "
                              "section); use a checkpoint that `seqvision train` wrote.")
    version = saved[SECTION].get("format", CHECKPOINT_FORMAT)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} was written in checkpoint format {version!r}, newer than the format "
                              f"{CHECKPOINT_FORMAT} this version of seqvision reads; upgrade seqvision.")
    return saved


def description_of(saved: dict[str, Any], path: Path) -> CheckpointDescription:
    section = saved[SECTION]
    try:
        config = TrainConfig.from_dict(section["config"], origin=f"the configuration inside {path}")
        num_classes = section.get("num_classes") or len(section["classes"])
        classes = tuple(section.get("classes") or (str(index) for index in range(num_classes)))
        return CheckpointDescription(config, tuple(section["image_shape"]), classes,
                                     Normalisation(**section["normalisation"]), int(saved.get("epoch", 0)) + 1)
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{path} has a damaged seqvision section ({error}); use a checkpoint that "
                              "`seqvision train` wrote.") from None


def rebuild_model(path: str | os.PathLike[str]) -> tuple[nn.Module, CheckpointDescription]:
    """The model a checkpoint holds, with its weights, in eval mode, from that one file."""
    from seqvision.models import build_model

    path = Path(path)
    saved = read_checkpoint(path)
    description = description_of(saved, path)
    model = build_model(description.config, description.image_shape, description.num_classes)
    prefix = AVERAGED_PREFIX if description.config.ema_decay else MODEL_PREFIX
    state = {key.removeprefix(prefix): value for key, value in saved["state_dict"].items() if key.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise CheckpointError(f"the weights in {path} do not fit its own {description.config.model} description "
                              f"({first}); the file is damaged.") from None
    return model.eval(), description


def _unreadable_because(error: BaseException, path: Path) -> str:
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and ("Unsupported global" in text or "GLOBAL " in text):
        # torch's own message goes on to suggest weights_only=False, the one thing not to do with such a file.
        return "it holds pickled Python objects that could run code, and seqvision only loads tensors and plain values"
    with open(path, "rb") as handle:
        zip_archive = handle.read(4) == b"PK\x03\x04"  # how every torch.save file begins
    if zip_archive or isinstance(error, EOFError):
        return "the file is truncated or damaged"
    return "it is not a PyTorch checkpoint file"


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def load_run_model(run: RunFolder, checkpoint: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """One of a run folder's checkpoints rebuilt; also returns where it came from ({"epoch", "checkpoint"})."""
    path = run.checkpoint(checkpoint)
    if not path.is_file():
        raise RunFolderError(f"{run.path} has no {checkpoint} checkpoint ({path} is missing); "
                             "train it to the end of at least one epoch, or pick --checkpoint last.")
    model, description = rebuild_model(path)
    if checkpoint == "last":
        warn_if_history_is_ahead(run, path, description.epoch, f"What follows is epoch {description.epoch}'s.")
    return model, {"epoch": description.epoch, "checkpoint": checkpoint}


def warn_if_history_is_ahead(run: RunFolder, path: Path, epoch: int, consequence: str) -> None:
    """Warn when an end-of-epoch checkpoint is older than the epochs history.csv records.

    A run killed between writing an epoch's row and its last.ckpt leaves one such epoch; a run folder written
    before 2026-11-26 can leave many, since Lightning 2.6 wrote last.ckpt only in an epoch with a new best."""
    recorded = len(read_history(run.history_path))
    if recorded > epoch:
        later = f"epoch {recorded}" if recorded == epoch + 1 else f"epochs {epoch + 1} to {recorded}"
        warnings.warn(f"{path} holds epoch {epoch}, but {run.history_path} records {recorded}: the weights of "
                      f"{later} were never saved (the run stopped before that checkpoint was written, or seqvision "
                      f"before 2026-11-26 wrote last.ckpt only when the validation loss improved). {consequence}",
                      SeqvisionWarning, stacklevel=3)
