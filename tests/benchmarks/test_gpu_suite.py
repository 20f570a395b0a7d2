"""benchmarks/gpu_suite.py: its tables from the H100 results, its time estimates worked out by hand, and a quick
run on the CPU, where CI runs it (issue 11: every GPU path falls back to the CPU and is tested there)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RESULTS = [BENCHMARKS / "results" / "gpu_suite.json", BENCHMARKS / "results" / "gpu_suite_pixels.json"]


@pytest.fixture
def suite(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpu_suite")


def run_suite(arguments: list[str], data: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if data is not None:
        env["SEQVISION_DATA"] = str(data)
    return subprocess.run([sys.executable, str(BENCHMARKS / "gpu_suite.py"), *arguments], capture_output=True,
                          text=True, env=env, timeout=300, check=False)


def test_report_prints_the_h100_tables(golden) -> None:
    result = run_suite(["--report", *map(str, RESULTS)])
    assert result.returncode == 0, result.stderr
    golden("gpu_suite_tables.md", result.stdout)


def test_a_training_is_estimated_from_its_steps_per_epoch_and_fixed_costs(suite: ModuleType) -> None:
    training = suite.Training("large", "model=lstm,batch_size=1024", 10, suite.StepCase("lstm", "rows", 1024), "32")
    # ceil(54,000 / 1,024) = 53 steps of 10 ms + 6 ms each, a 1 s test pass per epoch, 25 s to start
    assert suite.estimated_seconds(training, 0.010, 10) == pytest.approx(10 * (53 * 0.016 + 1.0) + 25.0)


def test_fixed_epochs_run_only_when_they_fit(suite: ModuleType) -> None:
    training = suite.Training("defaults", "model=lstm", 10, suite.StepCase("lstm", "rows", 128), "bf16")
    needed = 10 * (422 * 0.010 + 1.0) + 25.0  # 422 steps of 128 images, 4 ms + 6 ms each
    assert suite.planned_epochs(training, 0.004, 100.0) == (10, pytest.approx(needed))
    assert suite.planned_epochs(training, 0.004, 70.0) == (0, pytest.approx(needed))


def test_a_share_of_the_budget_buys_as_many_epochs_as_fit(suite: ModuleType) -> None:
    training = suite.Training("pixels", "model=lstm,scan=pixels", 30, suite.StepCase("lstm", "pixels", 128), "32",
                              share=0.5)
    per_epoch = 422 * 0.010 + 1.0  # 5.22 s
    assert suite.planned_epochs(training, 0.004, 200.0) == (14, pytest.approx(14 * per_epoch + 25.0))  # 75 s / 5.22
    assert suite.planned_epochs(training, 0.004, 10_000.0)[0] == 30
    assert suite.planned_epochs(training, 0.004, 50.0)[0] == 0


def test_follow_ups_run_only_by_name(suite: ModuleType) -> None:
    follow_ups = [t.label for t in suite.trainings(False) if t.follow_up]
    assert follow_ups and all("pixel" in label for label in follow_ups)


def test_a_budget_too_short_for_a_training_skips_it_and_says_so(mnist_root: Path) -> None:
    result = run_suite(["--quick", "--budget", "1"], mnist_root)
    assert result.returncode == 0, result.stderr
    assert "== skipped lstm defaults: about" in result.stderr
    assert "| lstm defaults | skipped: about" in result.stdout
    assert "| lstm, rows, batch 16 |" in result.stdout


@pytest.mark.slow
def test_quick_suite_runs_on_the_cpu(mnist_root: Path) -> None:
    result = run_suite(["--quick"], mnist_root)
    assert result.returncode == 0, result.stderr
    assert "GPU: none" in result.stdout
    for row in ("| lstm, rows, batch 16 |", "| lstm (explicit cell), rows, batch 16 |", "| cnn, rows, batch 16 |",
                "| lstm defaults | 1 |"):
        assert row in result.stdout, result.stdout
