"""Metrics against values worked out by hand on six predictions over three classes, and the prediction pass
they are computed from."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_roc

from seqvision.data.batches import InMemoryBatches, Normalisation
from seqvision.evaluation.metrics import Predictions, classification_metrics, confusion_csv, per_class_csv, predict

# Rows are the predicted probabilities; the true labels are 0, 0, 1, 1, 2, 2. Argmax predicts 0, 1, 1, 1, 2, 0.
PROBABILITIES = [
    [0.70, 0.20, 0.10],
    [0.29, 0.61, 0.10],
    [0.10, 0.81, 0.09],
    [0.20, 0.50, 0.30],
    [0.10, 0.09, 0.81],
    [0.50, 0.30, 0.20],
]
LABELS = [0, 0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def metrics():
    logits = torch.tensor(PROBABILITIES, dtype=torch.float64).log()
    return classification_metrics(Predictions(logits, torch.tensor(LABELS)), num_classes=3, top_k=2)


def test_accuracy_loss_and_top_k(metrics):
    assert metrics["test_accuracy"] == pytest.approx(4 / 6)
    # top-2 misses only the last image: its true class has the smallest probability
    assert metrics["top_k_accuracy"] == pytest.approx(5 / 6)
    true_probabilities = [0.70, 0.29, 0.81, 0.50, 0.81, 0.20]
    assert metrics["test_loss"] == pytest.approx(-sum(map(math.log, true_probabilities)) / 6)
    assert metrics["test_samples"] == 6


def test_confusion_matrix_precision_recall_f1(metrics):
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert metrics["precision"] == pytest.approx([1 / 2, 2 / 3, 1])
    assert metrics["recall"] == pytest.approx([1 / 2, 1, 1 / 2])
    assert metrics["f1"] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert metrics["weighted_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)  # equal support
    assert metrics["support"] == [2, 2, 2]


def test_one_vs_rest_auc_and_roc(metrics):
    # In every class, 7 of the 8 (positive, negative) pairs are ranked the right way round.
    assert metrics["auc"] == pytest.approx([7 / 8] * 3)
    assert metrics["macro_auc"] == pytest.approx(7 / 8)
    for curve in metrics["roc"]:
        assert curve["fpr"][0] == 0 and curve["tpr"][-1] == 1 and curve["fpr"][-1] == 1


def test_expected_calibration_error(metrics):
    # Bins (width 1/15) hold confidences {0.5, 0.5} with accuracy 1/2, {0.61} wrong, {0.70} right, {0.81, 0.81} right.
    assert metrics["ece"] == pytest.approx((0 + 0.61 + 0.30 + 2 * 0.19) / 6)


def test_csv_tables(metrics):
    rows = per_class_csv(metrics, ["a", "b", "c"]).splitlines()
    assert rows[0] == "class,precision,recall,f1,auc,support"
    assert rows[1] == "a,0.500000,0.500000,0.500000,0.875000,2"
    assert rows[-1].startswith("weighted average,") and rows[-1].endswith(",6")
    assert confusion_csv(metrics, ["a", "b", "c"]).splitlines()[3] == "c,1,0,1"


def test_predict_gives_every_batch_in_order_as_one_pass_would():
    images = np.random.default_rng(0).integers(0, 256, size=(103, 6, 5), dtype=np.uint8)
    labels = np.arange(103) % 4
    batches = InMemoryBatches(images, labels, 16, Normalisation(0.5, 0.25))  # the last batch holds 7
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(30, 4))
    predictions = predict(model, batches)
    with torch.no_grad():
        expected = model(Normalisation(0.5, 0.25).apply(torch.from_numpy(images)))
    torch.testing.assert_close(predictions.logits, expected)
    assert predictions.logits.dtype == torch.float32 and torch.equal(predictions.labels, torch.from_numpy(labels))


def on_polyline(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Whether each point lies on one of the segments joining consecutive corners."""
    start, end = corners[:-1, None, :], corners[1:, None, :]
    cross = (end - start)[..., 0] * (points - start)[..., 1] - (end - start)[..., 1] * (points - start)[..., 0]
    within = ((np.minimum(start, end) <= points) & (points <= np.maximum(start, end))).all(axis=-1)
    return (within & (np.abs(cross) < 1e-12)).any(axis=0)


def test_roc_curves_keep_only_their_corners_and_the_same_polyline():
    # Scores rounded to 0.05 tie often, so the curves also have diagonal steps, which must stay.
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (600,), generator=generator)
    logits = torch.randn(600, 4, generator=generator, dtype=torch.float64) + 2.0 * nn.functional.one_hot(labels, 4)
    predictions = Predictions(((torch.softmax(logits, dim=1) * 20).round() / 20).clamp_min(1e-3).log(), labels)
    metrics = classification_metrics(predictions, num_classes=4)
    every_fpr, every_tpr, _ = multiclass_roc(predictions.probabilities, labels, 4)
    for curve, fpr, tpr, auc in zip(metrics["roc"], every_fpr, every_tpr, metrics["auc"], strict=True):
        corners = np.column_stack([curve["fpr"], curve["tpr"]])
        every_point = np.column_stack([fpr.numpy(), tpr.numpy()])
        assert 3 <= len(corners) < len(every_point) / 2
        assert on_polyline(every_point, corners).all()
        assert {tuple(point) for point in corners} <= {tuple(point) for point in every_point}
        assert np.trapezoid(corners[:, 1], corners[:, 0]) == pytest.approx(auc, abs=1e-6)
        assert min(x for x in curve["fpr"] if x > 0) == fpr[fpr > 0].min()


def test_a_perfect_roc_curve_keeps_where_its_logarithmic_axis_starts():
    # Class 1 scores its positives 0.9, 0.8, 0.7 and its negatives 0.3, 0.2, 0.1: the curve runs up the left edge,
    # then along the top, where only its first step, to a false-positive rate of 1/3, stays.
    probabilities = torch.tensor([[0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.05, 0.9, 0.05], [0.1, 0.8, 0.1],
                                  [0.15, 0.7, 0.15], [0.8, 0.1, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    curve = classification_metrics(Predictions(probabilities.log(), labels), num_classes=3)["roc"][1]
    assert curve["fpr"] == pytest.approx([0, 0, 1 / 3, 1]) and curve["tpr"] == [0, 1, 1, 1]
