"""Class names come from the dataset and reach every output: run.json, the checkpoint, the report's tables, and
what predict and the server answer (a Fashion-MNIST user reads "Sneaker", not 7)."""

import csv
import dataclasses

import numpy as np
import pytest

import seqvision
from seqvision.data import get_dataset, load_dataset
from seqvision.data.registry import DATASETS, DatasetSpec
from seqvision.data.splits import ImageSplits
from seqvision.runs import RunFolder, rebuild_model
from seqvision.serving.predict import Predictor

NAMES = ("zero", "one", "two")


def three_digits(data_dir) -> ImageSplits:
    digits = load_dataset("digits")
    train, test = digits.train_labels < 3, digits.test_labels < 3
    return dataclasses.replace(digits, name="three-digits", train_images=digits.train_images[train],
                               train_labels=digits.train_labels[train], test_images=digits.test_images[test],
                               test_labels=digits.test_labels[test], num_classes=3)


@pytest.fixture
def named_dataset(monkeypatch):
    spec = DatasetSpec("three-digits", (8, 8), 3, "digits 0-2 with named classes", three_digits, 1.0, NAMES)
    monkeypatch.setitem(DATASETS._entries, "three-digits", spec)


def test_fashion_mnist_has_its_class_names():
    assert get_dataset("fashion-mnist").classes[7] == "Sneaker"
    assert get_dataset("fashion-mnist").classes[9] == "Ankle boot"
    assert get_dataset("mnist").classes == tuple(str(digit) for digit in range(10))


def test_class_names_reach_the_run_the_report_and_predictions(named_dataset, tmp_path):
    result = seqvision.train(model="lstm", dataset="three-digits", epochs=3, lr=0.01, hidden=16, out=tmp_path / "run",
                             progress=False)
    run = RunFolder(result.run_dir)
    assert run.read_info()["classes"] == list(NAMES)
    _, description = rebuild_model(run.checkpoint("best"))
    assert description.classes == NAMES
    with open(run.path / "per_class.csv", newline="") as handle:
        assert [row["class"] for row in csv.DictReader(handle)][:3] == list(NAMES)
    with open(run.path / "confusion_matrix.csv", newline="") as handle:
        assert next(csv.reader(handle))[1:] == list(NAMES)
    predictor = Predictor.open(run.path)
    images = three_digits(None).test_images[:5]
    answers = predictor.predict(np.asarray(images))
    assert all(answer.ranked[0][0] in NAMES for answer in answers)
    assert sorted(name for name, _ in answers[0].ranked) == sorted(NAMES)
