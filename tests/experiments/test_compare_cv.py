"""compare and cv on tiny real runs of the digits data."""

import csv
import json
import shutil

import pytest

from seqvision.cli import main
from seqvision.errors import ConfigError
from seqvision.experiments.compare import compare
from seqvision.experiments.cv import cross_validate

TINY = {"dataset": "digits", "epochs": 2, "hidden": 16, "lr": 0.01}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    return compare(["lstm", "gru"], seeds=2, out=tmp_path_factory.mktemp("compare"), **TINY)


def test_compare_trains_every_model_and_seed(comparison):
    assert sorted(run.path.name for run in comparison.runs) == ["gru-seed0", "gru-seed1", "lstm-seed0", "lstm-seed1"]
    with open(comparison.csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["lstm", "gru"]
    for row in rows:
        runs = [run for run in comparison.runs if run.model == row["model"]]
        accuracies = [run.test_accuracy for run in runs]
        assert int(row["runs"]) == 2
        assert float(row["test_accuracy_mean"]) == pytest.approx(sum(accuracies) / 2)
        assert float(row["test_accuracy_std"]) == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2 ** 0.5)
        assert float(row["images_per_second"]) > 0 and float(row["seconds_per_epoch"]) > 0
        assert int(row["parameters"]) == runs[0].parameters
    table = comparison.markdown.read_text().splitlines()
    assert table[0].startswith("| model | runs | parameters | test accuracy")
    assert table[2].startswith("| lstm | 2 | 1,") and table[3].startswith("| gru | 2 |")
    assert comparison.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_existing_runs_without_training(comparison, tmp_path, capsys):
    runs = [str(run.path) for run in comparison.runs]
    before = {path: (comparison.runs[0].path / "checkpoints" / "best.ckpt").stat().st_mtime_ns for path in runs[:1]}
    assert main(["compare", "--runs", *runs, "--out", str(tmp_path / "again")]) == 0
    assert "| lstm | 2 |" in capsys.readouterr().out
    with open(tmp_path / "again" / "comparison.csv", newline="") as handle:
        again = {row["model"]: float(row["test_accuracy_mean"]) for row in csv.DictReader(handle)}
    first = {row["model"]: row["test_accuracy_mean"] for row in comparison.rows()}
    assert again == pytest.approx(first)
    assert (comparison.runs[0].path / "checkpoints" / "best.ckpt").stat().st_mtime_ns == before[runs[0]]


def test_compare_refuses_unfinished_runs_and_mixed_input(comparison, tmp_path):
    unfinished = shutil.copytree(comparison.runs[0].path, tmp_path / "unfinished")
    (unfinished / "test_metrics.json").unlink()
    with pytest.raises(ConfigError, match="has not finished training"):
        compare(run_dirs=[unfinished], out=tmp_path / "out")
    with pytest.raises(ConfigError, match="either model names to train or existing run folders"):
        compare(["lstm"], run_dirs=[comparison.runs[0].path], out=tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown model 'lstn'"):
        compare(["lstm", "lstn"], out=tmp_path / "typo", **TINY)
    assert not (tmp_path / "typo").exists(), "a typo in the last model name is caught before any training"


def test_cross_validation_partitions_the_training_set(tmp_path, capsys):
    result = cross_validate(folds=3, out=tmp_path / "cv", **TINY)
    assert [row["fold"] for row in result.folds] == [0, 1, 2]
    # The held-out folds together are the whole training set (1,437 digits), each image exactly once.
    assert sum(row["test_samples"] for row in result.folds) == 1437
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    accuracies = [row["test_accuracy"] for row in saved["per_fold"]]
    assert saved["mean_accuracy"] == pytest.approx(sum(accuracies) / 3)
    assert 0 < saved["std_accuracy"] < 0.2
    assert "+/-" in result.summary.read_text()
