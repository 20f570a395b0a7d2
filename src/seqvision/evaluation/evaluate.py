"""Test-set evaluation of a saved run: one prediction pass, shared by the end of training, `seqvision eval`
and the report."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqvision.data.batches import InMemoryBatches, Normalisation, eval_batches, train_and_test
from seqvision.errors import RunFolderError
from seqvision.evaluation.metrics import Predictions, predict
from seqvision.runs.checkpoint import load_run_model
from seqvision.runs.folder import RunFolder


@dataclass
class RunEvaluation:
    """A run's checkpoint, the test batches it was evaluated on, its predictions, and its test metrics."""

    run: RunFolder
    model: nn.Module
    test: InMemoryBatches
    predictions: Predictions
    metrics: dict[str, Any]


def loss_and_accuracy(predictions: Predictions) -> dict[str, Any]:
    """Mean cross-entropy (summed in float64, so batch order cannot matter) and accuracy over the split."""
    count = len(predictions.labels)
    total_loss = F.cross_entropy(predictions.logits.double(), predictions.labels, reduction="sum")
    correct = int((predictions.predicted == predictions.labels).sum())
    return {"test_loss": float(total_loss) / count, "test_accuracy": correct / count, "test_samples": count}


def load_test_split(run: RunFolder, data_dir: str | os.PathLike[str] | None = None) -> InMemoryBatches:
    """The test split the run was evaluated on, refusing data whose image size differs from the run's."""
    from seqvision.data import load_dataset
    from seqvision.data.folder import with_run_split

    config, info = run.load_config(), run.read_info()
    splits = load_dataset(config.dataset, data_dir if data_dir is not None else config.data_dir,
                          with_run_split(config, run.path))
    if tuple(splits.image_shape) != tuple(info["image_shape"]):
        raise RunFolderError(f"dataset {config.dataset} now has {splits.image_shape} images but the run was trained "
                             f"on {tuple(info['image_shape'])}; point --data-dir at the data it was trained on.")
    _, (images, labels) = train_and_test(config, splits)
    return eval_batches(images, labels, Normalisation(**info["normalisation"]))


def evaluate_run(run_dir: str | os.PathLike[str] | RunFolder, checkpoint: str = "best", *,
                 test: InMemoryBatches | None = None, data_dir: str | os.PathLike[str] | None = None,
                 device: torch.device | str = "cpu") -> RunEvaluation:
    """Predict the run's test set once with one of its checkpoints. `test` reuses batches already in memory
    (the ones training used); otherwise the dataset is loaded."""
    run = run_dir if isinstance(run_dir, RunFolder) else RunFolder.open(run_dir)
    model, where = load_run_model(run, checkpoint)
    test = test if test is not None else load_test_split(run, data_dir)
    predictions = predict(model, test, device)
    model.cpu()  # pictures and traces that follow run on the CPU
    return RunEvaluation(run, model, test, predictions, {**where, **loss_and_accuracy(predictions)})


def evaluate(run_dir: str | os.PathLike[str], checkpoint: str = "best",
             data_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Re-evaluate a saved run on its test set and return the metrics (the same numbers training recorded)."""
    return evaluate_run(run_dir, checkpoint, data_dir=data_dir).metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    return (f"test accuracy {100 * metrics['test_accuracy']:.2f}%  test loss {metrics['test_loss']:.4f}  "
            f"on {metrics['test_samples']} images ({metrics['checkpoint']} checkpoint, epoch {metrics['epoch']})")


def recorded_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = RunFolder(run_dir).test_metrics_path
    if not path.is_file():
        return None
    return json.loads(path.read_text())
