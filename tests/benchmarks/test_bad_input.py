"""The benchmarks refuse missing input with one line that names the fix, never with a traceback, and an interrupted
write leaves no half-written table behind (issue 11).

Each script runs as a real subprocess with nowhere to find MNIST: an empty $SEQVISION_DATA, an empty user cache
and no system copy. None gets as far as measuring anything.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from seqvision.config import TrainConfig
from seqvision.data import write_idx
from seqvision.data.sources import SYSTEM_DATASET_DIRS
from seqvision.errors import DatasetError
from seqvision.runs.folder import RunFolder

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
FIX = "SEQVISION_DATA=../shared/datasets"
# The arguments of a quick run of each script that reads MNIST; {tmp} and {run} are filled in per test.
MNIST_SCRIPTS = {
    "side_by_side.py": ["--quick"],
    "frontier.py": ["--quick", "--family", "lstm", "--only", "lstm, float32"],
    "train_accuracy.py": ["--dataset", "mnist", "--epochs", "1", "--train-limit", "100", "--out", "{tmp}/out"],
    "resume_exactness.py": ["--out", "{tmp}/out", "--", "--dataset", "mnist", "--epochs", "1", "--train-limit", "100"],
    "inference_speed.py": ["{run}"],
    "serving_load.py": ["{run}", "--requests", "1"],
    "default_command.py": ["--seeds", "0", "--train-limit", "100"],
    "report_speed.py": ["{run}"],
    "augment_speed.py": ["--rounds", "1"],
    "gpu_suite.py": ["--quick"],
}
# These import torch and Lightning before they can look for the data: seconds each.
SLOW_MNIST_SCRIPTS = {
    "epoch_speed.py": ["--train-limit", "100", "--rounds", "1", "--workers"],
    "memory_stages.py": ["--dataset", "mnist", "--epochs", "1", "--train-limit", "100", "--out", "{tmp}/out"],
}


@pytest.fixture
def no_mnist(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine without MNIST: SEQVISION_DATA is an empty folder, so is the user cache."""
    if any((folder / "mnist").exists() for folder in SYSTEM_DATASET_DIRS):
        pytest.skip("this machine has a system copy of MNIST, which every benchmark would find")
    (tmp_path / "data").mkdir()
    env = {**os.environ, "SEQVISION_DATA": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    env.pop("SEQVISION_NO_DOWNLOAD", None)
    return env


def mnist_run_folder(path: Path) -> Path:
    """A run folder as far as the benchmarks read it before loading data: run.json and a config that trains on mnist."""
    run = RunFolder.create(path, {})
    TrainConfig(dataset="mnist").save(run.config_path)
    return path


def run_script(script: Path, arguments: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout ends the test rather than the suite if a script ever starts to train.
    return subprocess.run([sys.executable, str(script), *arguments], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def refused_in_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("script", [*MNIST_SCRIPTS, *(pytest.param(name, marks=pytest.mark.slow)
                                                      for name in SLOW_MNIST_SCRIPTS)])
def test_missing_mnist_is_refused_with_the_fix(script: str, no_mnist: dict[str, str], tmp_path: Path) -> None:
    arguments = {**MNIST_SCRIPTS, **SLOW_MNIST_SCRIPTS}[script]
    run = mnist_run_folder(tmp_path / "run")
    filled = [a.format(tmp=tmp_path, run=run) for a in arguments]
    line = refused_in_one_line(run_script(BENCHMARKS / script, filled, no_mnist))
    assert "mnist" in line and f"{tmp_path / 'data'}/mnist ($SEQVISION_DATA)" in line, line
    assert FIX in line, line
    assert not (tmp_path / "out").exists(), "the benchmark wrote output before it found its data"


def test_unset_data_folder_is_named(no_mnist: dict[str, str]) -> None:
    del no_mnist["SEQVISION_DATA"]
    line = refused_in_one_line(run_script(BENCHMARKS / "side_by_side.py", ["--quick"], no_mnist))
    assert line.startswith("error: SEQVISION_DATA is not set and the mnist files"), line
    assert FIX in line and "seqvision train --dataset mnist" in line, line


def test_disabled_downloads_are_named(no_mnist: dict[str, str]) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "frontier.py", ["--quick"],
                                          {**no_mnist, "SEQVISION_NO_DOWNLOAD": "1"}))
    assert FIX in line and "with SEQVISION_NO_DOWNLOAD unset" in line, line


def write_tiny_mnist(folder: Path) -> Path:
    """Four IDX files named as MNIST's, holding two blank images: enough to be found and read."""
    folder.mkdir(parents=True)
    for name in MNIST_FILES:
        array = np.zeros((2, 28, 28) if "images" in name else (2,), np.uint8)
        write_idx(folder / name, array)
    return folder


def test_missing_keras_environment_is_refused_with_make_bench_env(tmp_path: Path,
                                                                   no_mnist: dict[str, str]) -> None:
    # side_by_side.py looks for .venv-keras beside its own folder: a copy of benchmarks/ has none beside it.
    copy = shutil.copytree(BENCHMARKS, tmp_path / "repository" / "benchmarks",
                           ignore=shutil.ignore_patterns("results", "__pycache__"))
    write_tiny_mnist(tmp_path / "data" / "mnist")
    line = refused_in_one_line(run_script(copy / "side_by_side.py", ["--quick"], no_mnist))
    assert f"{tmp_path / 'repository' / '.venv-keras'} does not exist" in line and "`make bench-env`" in line, line


def test_side_by_side_refuses_no_rounds_before_looking_for_anything(no_mnist: dict[str, str]) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "side_by_side.py", ["--rounds", "0"], no_mnist))
    assert line == "error: --rounds must be at least 1, not 0.", line


def test_gpu_suite_without_a_gpu_names_the_cpu_benchmarks(no_mnist: dict[str, str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, which the suite would measure")
    line = refused_in_one_line(run_script(BENCHMARKS / "gpu_suite.py", [], no_mnist))
    assert line.startswith("error: no CUDA GPU is visible") and "benchmarks/model_speed.py" in line, line
    assert "--quick" in line, line


@pytest.mark.parametrize(("arguments", "message"), [
    (["--budget", "0"], "error: --budget must be a number of seconds above 0."),
    (["--only", "no such training"], "error: no training matches --only; labels: lstm defaults; "),
])
def test_gpu_suite_refuses_bad_arguments_in_one_line(arguments: list[str], message: str,
                                                     no_mnist: dict[str, str]) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "gpu_suite.py", arguments, no_mnist))
    assert line.startswith(message), line


@pytest.mark.parametrize(("content", "message"), [
    (None, "error: cannot read {file} as the suite's results ("),
    ("{not json", "error: cannot read {file} as the suite's results ("),
    ('{"steps": []}', "error: {file} is not a results file of gpu_suite.py;"),
])
def test_gpu_suite_report_refuses_a_file_it_did_not_write(content: str | None, message: str, tmp_path: Path,
                                                          no_mnist: dict[str, str]) -> None:
    file = tmp_path / "results.json"
    if content is not None:
        file.write_text(content)
    line = refused_in_one_line(run_script(BENCHMARKS / "gpu_suite.py", ["--report", str(file)], no_mnist))
    assert line.startswith(message.format(file=file)), line


def test_keras_program_refuses_a_folder_without_mnist(tmp_path: Path) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "keras_seeds.py", [
        "seed-000-lstm", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r.json")], dict(os.environ)))
    assert "has no train-images-idx3-ubyte[.gz]" in line and "--data-dir" in line, line


def test_keras_program_refuses_a_negative_seed_before_loading_anything(tmp_path: Path) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "keras_seeds.py", [
        "seed-002-cnn", "--data-dir", str(tmp_path), "--seed", "-1", "--out", str(tmp_path / "r.json")],
        dict(os.environ)))
    assert "--seed must be 0 or more (got -1)" in line, line


def test_keras_program_outside_the_keras_environment_says_how_to_make_it(tmp_path: Path) -> None:
    folder = write_tiny_mnist(tmp_path / "mnist")
    line = refused_in_one_line(run_script(BENCHMARKS / "keras_seeds.py", [
        "seed-000-lstm", "--data-dir", str(folder), "--out", str(tmp_path / "r.json")], dict(os.environ)))
    assert "Keras is not installed" in line and "`make bench-env`" in line, line


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks/bench_data.py, imported as the scripts import it."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("bench_data")


@pytest.mark.parametrize("inside", ["mnist", "."])
def test_mnist_is_found_in_seqvision_data_or_its_mnist_folder(inside: str, tmp_path: Path, bench: ModuleType,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_tiny_mnist(tmp_path / "data" / inside)
    monkeypatch.setenv("SEQVISION_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert bench.mnist_folder() == folder


def test_an_incomplete_mnist_folder_is_not_taken(tmp_path: Path, bench: ModuleType, no_mnist: dict[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_tiny_mnist(tmp_path / "data" / "mnist")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    for name in ("SEQVISION_DATA", "XDG_CACHE_HOME"):
        monkeypatch.setenv(name, no_mnist[name])
    with pytest.raises(DatasetError, match="are in none of"):
        bench.mnist_folder()


def test_datasets_without_files_are_left_to_seqvision(bench: ModuleType) -> None:
    assert bench.require_dataset("digits") is None


def test_interrupted_frontier_write_keeps_the_old_table_and_no_partial_file(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    frontier = importlib.import_module("frontier")
    table = tmp_path / "frontier.csv"
    row = dict.fromkeys(frontier.COLUMNS, "1")
    frontier.write_rows(table, [row])
    before = table.read_text()
    real_write_text = Path.write_text

    def ctrl_c_halfway(self: Path, text: str, *args: object, **kwargs: object) -> int:
        real_write_text(self, text[:len(text) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", ctrl_c_halfway)
    with pytest.raises(KeyboardInterrupt):
        frontier.write_rows(table, [row, row])
    assert table.read_text() == before
    assert [path.name for path in tmp_path.iterdir()] == ["frontier.csv"]


@pytest.mark.parametrize("script", ["default_command.py", "report_speed.py"])
def test_an_unknown_revision_is_refused_before_looking_for_anything(script: str, no_mnist: dict[str, str],
                                                                   tmp_path: Path) -> None:
    arguments = [str(mnist_run_folder(tmp_path / "run"))] if script == "report_speed.py" else []
    line = refused_in_one_line(run_script(BENCHMARKS / script, [*arguments, "--versus", "no-such-revision"],
                                          no_mnist))
    assert line.startswith("error: --versus no-such-revision: no such commit in "), line
    assert "for example 7219ab8" in line, line


def test_report_speed_refuses_no_rounds_before_looking_for_anything(no_mnist: dict[str, str], tmp_path: Path) -> None:
    line = refused_in_one_line(run_script(BENCHMARKS / "report_speed.py", [str(tmp_path / "run"), "--rounds", "0"],
                                          no_mnist))
    assert line == "error: --rounds must be at least 1, not 0.", line
