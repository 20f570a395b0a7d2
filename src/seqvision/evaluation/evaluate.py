"""Test-set evaluation of a saved run: the same code path at the end of training and in `seqvision eval`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqvision.data.batches import InMemoryBatches, Normalisation
from seqvision.errors import RunFolderError
from seqvision.training.run_folder import RunFolder


def evaluate_model(model: nn.Module, batches: InMemoryBatches, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Mean cross-entropy (summed in float64, so batch order cannot matter) and accuracy over the split."""
    from seqvision.evaluation.metrics import predict

    predictions = predict(model, batches, device)
    count = len(predictions.labels)
    total_loss = F.cross_entropy(predictions.logits.double(), predictions.labels, reduction="sum")
    correct = int((predictions.predicted == predictions.labels).sum())
    return {"test_loss": float(total_loss) / count, "test_accuracy": correct / count, "test_samples": count}


def load_checkpoint_model(run: RunFolder, checkpoint: str = "best") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the run's model from config.yaml and load weights from one of its checkpoints (no pickled code)."""
    from seqvision.models import build_model

    path = run.checkpoint(checkpoint)
    if not path.is_file():
        raise RunFolderError(f"{run.path} has no {checkpoint} checkpoint ({path} is missing); "
                             "train it to the end of at least one epoch, or pick --checkpoint last.")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for damaged or foreign files
        raise RunFolderError(f"cannot read checkpoint {path}: {error}") from None
    if "seqvision" not in saved or "state_dict" not in saved:
        raise RunFolderError(f"{path} is not a seqvision checkpoint (no seqvision section).")
    info = run.read_info()
    config = run.load_config()
    model = build_model(config, tuple(info["image_shape"]), info["num_classes"])
    prefix = "model."
    state = {key.removeprefix(prefix): value for key, value in saved["state_dict"].items() if key.startswith(prefix)}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunFolderError(f"checkpoint {path} does not fit the model in {run.config_path}: {error}") from None
    return model, {"epoch": saved.get("epoch", 0) + 1, "checkpoint": checkpoint}


@dataclass
class EvaluationSplit:
    """A run's test images as stored (uint8, for pictures) and as batches normalised the way it was trained."""

    images: np.ndarray
    labels: np.ndarray
    batches: InMemoryBatches


def load_test_split(run: RunFolder, data_dir: str | os.PathLike[str] | None = None) -> EvaluationSplit:
    """The test split the run was evaluated on, refusing data whose image size differs from the run's."""
    from seqvision.data import load_dataset
    from seqvision.training.batching import eval_batches, train_and_test

    config, info = run.load_config(), run.read_info()
    splits = load_dataset(config.dataset, data_dir if data_dir is not None else config.data_dir)
    if tuple(splits.image_shape) != tuple(info["image_shape"]):
        raise RunFolderError(f"dataset {config.dataset} now has {splits.image_shape} images but the run was trained "
                             f"on {tuple(info['image_shape'])}; point --data-dir at the data it was trained on.")
    _, (images, labels) = train_and_test(config, splits)
    return EvaluationSplit(images, labels, eval_batches(images, labels, Normalisation(**info["normalisation"])))


def evaluate(run_dir: str | os.PathLike[str], checkpoint: str = "best",
             data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run on its test set and return the metrics (the same numbers training recorded)."""
    run = RunFolder.open(run_dir)
    split = load_test_split(run, data_dir)
    model, where = load_checkpoint_model(run, checkpoint)
    return {**where, **evaluate_model(model, split.batches)}


def format_metrics(metrics: dict[str, Any]) -> str:
    return (f"test accuracy {100 * metrics['test_accuracy']:.2f}%  test loss {metrics['test_loss']:.4f}  "
            f"on {metrics['test_samples']} images ({metrics['checkpoint']} checkpoint, epoch {metrics['epoch']})")


def recorded_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = RunFolder(run_dir).test_metrics_path
    if not path.is_file():
        return None
    return json.loads(path.read_text())
