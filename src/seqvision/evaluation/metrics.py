"""Everything seed 001 lists for judging a classifier, computed by torchmetrics from one set of predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqvision.data.batches import InMemoryBatches
from seqvision.tables import csv_text

TOP_K = 3
CALIBRATION_BINS = 15


@dataclass
class Predictions:
    """Logits (N, C) and true labels (N,) for a whole split, on the CPU."""

    logits: torch.Tensor
    labels: torch.Tensor

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.logits.double(), dim=1)

    @property
    def predicted(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)


@torch.inference_mode()
def predict(model: nn.Module, batches: InMemoryBatches, device: torch.device | str = "cpu") -> Predictions:
    """The model's logits for every batch of a split, in order, with the batches' labels."""
    model.eval().to(device)
    count = len(batches.labels)
    # Filled in place rather than gathered batch by batch and concatenated: a small tensor kept from every batch
    # pins the heap between the batches' large temporaries, which glibc's malloc then cannot reuse (the explicit
    # LSTM's test pass over MNIST grew by 14 MiB a batch, to 700 MiB).
    logits, labels = torch.empty(0), torch.empty(count, dtype=torch.int64)
    start = 0
    for images, batch_labels in batches:
        batch_logits = model(images.to(device))
        if start == 0:
            logits = torch.empty(count, batch_logits.shape[1])
        end = start + len(batch_labels)
        logits[start:end] = batch_logits
        labels[start:end] = batch_labels
        start = end
    return Predictions(logits, labels)


def classification_metrics(predictions: Predictions, num_classes: int, top_k: int = TOP_K) -> dict[str, Any]:
    """Scalar metrics and per-class lists, as plain Python numbers ready for JSON.

    `precision`/`recall`/`f1` are per class; the `macro_` versions average classes equally, the
    `weighted_` versions by their support. `roc` holds one-vs-rest curves; `ece` is the expected
    calibration error of the top-class probability over 15 equal-width bins.
    """
    from torchmetrics.functional import classification as tm

    probs, labels = predictions.probabilities, predictions.labels
    common = {"num_classes": num_classes}
    metrics: dict[str, Any] = {
        "test_loss": float(F.cross_entropy(predictions.logits.double(), labels, reduction="sum")) / len(labels),
        "test_accuracy": float(tm.multiclass_accuracy(probs, labels, average="micro", **common)),
        "top_k": top_k,
        "top_k_accuracy": float(tm.multiclass_accuracy(probs, labels, average="micro", top_k=min(top_k, num_classes),
                                                       **common)),
        "ece": float(tm.multiclass_calibration_error(probs, labels, n_bins=CALIBRATION_BINS, **common)),
        "test_samples": len(labels),
    }
    for name, function in (("precision", tm.multiclass_precision), ("recall", tm.multiclass_recall),
                           ("f1", tm.multiclass_f1_score)):
        metrics[name] = function(probs, labels, average="none", **common).tolist()
        for average in ("macro", "weighted"):
            metrics[f"{average}_{name}"] = float(function(probs, labels, average=average, **common))
    metrics["support"] = torch.bincount(labels, minlength=num_classes).tolist()
    metrics["auc"] = tm.multiclass_auroc(probs, labels, average="none", **common).tolist()
    metrics["macro_auc"] = float(sum(metrics["auc"]) / num_classes)
    metrics["confusion_matrix"] = tm.multiclass_confusion_matrix(probs, labels, **common).tolist()
    false_positive, true_positive, _ = tm.multiclass_roc(probs, labels, **common)
    metrics["roc"] = [roc_corners(fpr, tpr) for fpr, tpr in zip(false_positive, true_positive, strict=True)]
    return metrics


def roc_corners(fpr: torch.Tensor, tpr: torch.Tensor) -> dict[str, list[float]]:
    """A ROC curve without the points inside its vertical and horizontal runs: the same polyline.

    torchmetrics gives a point per distinct score, 10,001 per class on MNIST's test set, where a good classifier's
    curve turns a few dozen times; the points in between made metrics.json 4 MB. The first point with a positive
    false-positive rate stays too: the report's logarithmic axis starts at the smallest one."""
    vertical, horizontal = fpr[1:] == fpr[:-1], tpr[1:] == tpr[:-1]  # step i goes from point i to point i + 1
    inside_a_run = (vertical[1:] & vertical[:-1]) | (horizontal[1:] & horizontal[:-1])
    keep = torch.cat([torch.tensor([True]), ~inside_a_run, torch.tensor([True])])
    keep[min(int(torch.count_nonzero(fpr == 0)), len(fpr) - 1)] = True  # fpr never decreases along the curve
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def per_class_csv(metrics: dict[str, Any], class_names: list[str]) -> str:
    rows = [[name, *(f"{metrics[key][index]:.6f}" for key in ("precision", "recall", "f1", "auc")),
             metrics["support"][index]] for index, name in enumerate(class_names)]
    for average in ("macro", "weighted"):
        rows.append([f"{average} average", *(f"{metrics[f'{average}_{key}']:.6f}" for key in
                                             ("precision", "recall", "f1")),
                     f"{metrics['macro_auc']:.6f}" if average == "macro" else "", sum(metrics["support"])])
    return csv_text(["class", "precision", "recall", "f1", "auc", "support"], rows)


def confusion_csv(metrics: dict[str, Any], class_names: list[str]) -> str:
    rows = [[name, *row] for name, row in zip(class_names, metrics["confusion_matrix"], strict=True)]
    return csv_text(["true \\ predicted", *class_names], rows)
