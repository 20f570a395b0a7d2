"""seqvision.train = train_model, then one evaluation: the dataset is loaded once and the test set predicted once,
with or without the report; compare summarises finished runs without loading any dataset."""

import dataclasses

import pytest

import seqvision
import seqvision.evaluation.evaluate as evaluate_module
from seqvision.data.registry import DATASETS
from seqvision.experiments.compare import compare


class Counted:
    """Calls the real function and counts the calls."""

    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.function(*args, **kwargs)


@pytest.fixture
def counters(monkeypatch):
    spec = DATASETS.get("digits")
    loads = Counted(spec.load)
    monkeypatch.setitem(DATASETS._entries, "digits", dataclasses.replace(spec, load=loads))
    predictions = Counted(evaluate_module.predict)
    monkeypatch.setattr(evaluate_module, "predict", predictions)
    return loads, predictions


@pytest.mark.parametrize("report", [True, False])
def test_a_training_run_loads_its_data_once_and_predicts_the_test_set_once(tmp_path, counters, report):
    loads, predictions = counters
    result = seqvision.train(model="lstm", dataset="digits", epochs=1, hidden=16, out=tmp_path / "run",
                             progress=False, report=report)
    assert (loads.calls, predictions.calls) == (1, 1)
    assert (result.run_dir / "report.html").is_file() == report
    assert result.test_metrics == seqvision.evaluate(result.run_dir), "eval recomputes the same numbers"


def test_compare_of_finished_runs_loads_no_dataset(tmp_path, counters):
    loads, _ = counters
    run = seqvision.train(model="lstm", dataset="digits", epochs=1, hidden=16, out=tmp_path / "run",
                          progress=False, report=False).run_dir
    loads.calls = 0
    comparison = compare(run_dirs=[run], out=tmp_path / "compare")
    assert loads.calls == 0
    assert comparison.runs[0].images_per_second > 0
