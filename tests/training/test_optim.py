"""Every optimiser and schedule trains for real, and the learning rate follows the schedule asked for."""

import csv

import pytest

import seqvision
from seqvision.config import TrainConfig
from seqvision.runs.folder import RunFolder


def learning_rates(run_dir) -> list[float]:
    with open(RunFolder(run_dir).history_path, newline="") as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


def small(**changes) -> TrainConfig:
    return TrainConfig(**{"dataset": "digits", "hidden": 32, "epochs": 4, "lr": 0.01, "seed": 3, **changes})


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_each_optimizer_learns(tmp_path, optimizer):
    result = seqvision.train(small(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.01),
                             out=tmp_path / "run", progress=False)
    assert result.test_metrics["test_accuracy"] > 0.3, "well above the 10% of guessing"


@pytest.mark.slow
def test_schedules_shape_the_learning_rate(tmp_path):
    constant = learning_rates(seqvision.train(small(scheduler="none"), out=tmp_path / "a", progress=False).run_dir)
    assert constant == [0.01] * 4
    cosine = learning_rates(seqvision.train(small(scheduler="cosine"), out=tmp_path / "b", progress=False).run_dir)
    assert cosine == sorted(cosine, reverse=True) and cosine[-1] == 0
    # One-cycle peaks 30% of the way through: over 10 epochs, after epoch 3.
    onecycle = learning_rates(seqvision.train(small(scheduler="onecycle", epochs=10, hidden=16), out=tmp_path / "c",
                                              progress=False).run_dir)
    assert onecycle.index(max(onecycle)) == 2 and onecycle[-1] < onecycle[0], "warm-up, then anneal"
    plateau = learning_rates(seqvision.train(small(scheduler="plateau"), out=tmp_path / "d", progress=False).run_dir)
    assert plateau[0] == 0.01 and all(0 < lr <= 0.01 for lr in plateau)


@pytest.mark.slow
def test_early_stopping_stops_when_validation_stops_improving(tmp_path):
    # A learning rate far too high for SGD: validation loss gets worse and patience 1 ends the run early.
    result = seqvision.train(small(optimizer="sgd", lr=3.0, clip_grad=0.0, epochs=30, early_stop=1,
                                   scheduler="none"), out=tmp_path / "run", progress=False)
    assert result.epochs_trained < 30
    assert len(learning_rates(result.run_dir)) == result.epochs_trained


def test_column_scan_learns(tmp_path):
    result = seqvision.train(small(scan="columns"), out=tmp_path / "run", progress=False)
    assert result.test_metrics["test_accuracy"] > 0.5
    assert RunFolder.open(result.run_dir).load_config().scan == "columns"
