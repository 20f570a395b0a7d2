"""`seqvision tune` on tiny real trials of the digits data: the best config and the study page, studies shared
by real processes (SQLite, and PostgreSQL when marked slow), failed trials, interrupted tunes, bad storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from seqvision.cli import main
from seqvision.config import load_preset
from seqvision.errors import StudyStorageError
from seqvision.experiments.search_space import SEARCH_SPACE, dimensions_for
from seqvision.experiments.train_test import train
from seqvision.experiments.tune import tune
from seqvision.models import get_model_entry

# A trial takes a second or two: 300 images, 2 epochs, and a small fixed hidden size unless a test searches it.
TINY = {"model": "lstm", "dataset": "digits", "epochs": 2, "train_limit": 300}
TINY_FLAGS = ["--model", "lstm", "--dataset", "digits", "--epochs", "2", "--train-limit", "300", "--hidden", "16"]
# Far beyond any memory: the recurrent weight matrix alone would be 4 * hidden^2 floats (64 TB).
OUT_OF_MEMORY_HIDDEN = 2**21


def trials_of(storage: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name, storage=storage).get_trials()


def tune_process(out: Path, *argv: str) -> subprocess.Popen:
    # A suite started in the background by a non-interactive shell passes SIGINT on ignored; the Ctrl-C test needs
    # the default handler a terminal's user has.
    return subprocess.Popen([sys.executable, "-m", "seqvision", "tune", *TINY_FLAGS, "--out", str(out), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def test_search_space_follows_the_models_options():
    assert [row.option for row in dimensions_for(get_model_entry("cnn").defaults)] == [
        "lr", "batch_size", "weight_decay", "scheduler", "dropout"]
    lstm = dimensions_for(get_model_entry("lstm").defaults, fixed=frozenset({"lr", "hidden"}))
    assert [row.option for row in lstm] == ["batch_size", "weight_decay", "scheduler", "layers", "dropout"]
    hidden = next(row for row in SEARCH_SPACE if row.option == "hidden")
    assert hidden.bounds(get_model_entry("stacked-lstm").defaults) == (12, 100)
    assert hidden.bounds(get_model_entry("lstm").defaults) == (32, 256)


@pytest.mark.slow
def test_tune_writes_a_best_config_that_trains_and_the_study_page(tmp_path):
    result = tune(trials=3, out=tmp_path / "tune", progress=False, hidden=16, **TINY)

    assert result.counts["complete"] + result.counts["pruned"] == 3 and result.trials_run == [0, 1, 2]
    assert "hidden" not in result.best_params, "an option given is held fixed"
    assert {"lr", "batch_size", "weight_decay", "scheduler", "layers", "dropout"} == set(result.best_params)
    for number in result.trials_run:  # each trial is a normal run folder
        assert (tmp_path / "tune" / "trials" / str(number) / "history.csv").is_file()

    best = load_preset(result.best_config)
    assert best.lr == pytest.approx(result.best_params["lr"]) and best.hidden == 16 and best.epochs == 2
    trained = train(best, out=tmp_path / "again", report=False, progress=False)
    assert trained.epochs_trained == 2

    page = result.page.read_text()
    assert page.count('class="plotly-graph-div"') == 3, "history, importances and curves are drawn"
    assert "Optimisation history" in page and "Parameter importances" in page
    assert "<script src=" not in page, "plotly.js is inlined: the page works offline"
    assert len(page) > 1_000_000


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Fixed parameter hidden with value 2097152 is out of range")
def test_a_crashing_trial_is_recorded_failed_and_the_study_goes_on(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="oom", direction="minimize")
    # A user's own first guess, enqueued through Optuna: a hidden size no machine can hold.
    study.enqueue_trial({"hidden": OUT_OF_MEMORY_HIDDEN})

    result = tune(trials=1, out=tmp_path / "tune", storage=storage, study_name="oom", progress=False, **TINY)

    failed, answered = trials_of(storage, "oom")
    assert failed.state == TrialState.FAIL and failed.params["hidden"] == OUT_OF_MEMORY_HIDDEN
    assert failed.user_attrs["failure"].startswith("RuntimeError: ") and "memory" in failed.user_attrs["failure"]
    assert "\n" not in failed.user_attrs["failure"]
    assert answered.state in (TrialState.COMPLETE, TrialState.PRUNED) and result.best_trial == 1
    page = result.page.read_text()
    assert "need at least 2 complete trials; this study has 1 so far" in page
    assert failed.user_attrs["failure"][:40] in page


@pytest.mark.slow
def test_a_trial_behind_the_median_is_pruned_after_its_warm_up_epoch(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="prune", direction="minimize")
    for _ in range(4):  # earlier trials that reached a validation loss no real trial gets near
        study.add_trial(optuna.trial.create_trial(value=1e-6, intermediate_values={0: 1e-6, 1: 1e-6, 2: 1e-6}))

    tune(trials=5, out=tmp_path / "tune", storage=storage, study_name="prune", progress=False,
         **{**TINY, "epochs": 3, "hidden": 16})

    pruned = trials_of(storage, "prune")[4]
    assert pruned.state == TrialState.PRUNED
    assert sorted(pruned.intermediate_values) == [0, 1], "judged from the second epoch on, and stopped after it"
    run = tmp_path / "tune" / "trials" / "4"
    assert json.loads((run / "run.json").read_text())["status"] == "pruned"
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 2


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    outputs = [finish(worker) for worker in two_tuners(tmp_path, storage, "shared")]

    trials = trials_of(storage, "shared")
    check_shared_study(trials, tmp_path, 4)
    assert all("study shared in sqlite:///" in output for output in outputs)


def two_tuners(out: Path, storage: str, study_name: str) -> list[subprocess.Popen]:
    """Processes a and b, started together on one study of 4 trials. TINY's trials take well under a second: one
    process once ran all four while the other was still importing, so these train on four times the images."""
    return [tune_process(out / name, "--trials", "4", "--storage", storage, "--study-name", study_name,
                         "--train-limit", "1200") for name in ("a", "b")]


def check_shared_study(trials: list[optuna.trial.FrozenTrial], out: Path, total: int) -> None:
    answered = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # Both may start a trial when one is missing: the total is at least `total`, at most one over per extra process.
    assert total <= len(answered) <= total + 1 and len(answered) == len(trials)
    by_process = {pid: {t.number for t in trials if t.user_attrs["pid"] == pid} for pid in
                  {t.user_attrs["pid"] for t in trials}}
    assert len(by_process) == 2 and all(by_process.values()), f"both processes ran trials: {by_process}"
    folders = {name: {int(p.name) for p in (out / name / "trials").iterdir()} for name in ("a", "b")}
    assert folders["a"].isdisjoint(folders["b"]) and folders["a"] | folders["b"] == {t.number for t in trials}
    assert len({t.params["lr"] for t in trials}) == len(trials), "each trial drew its own options"


@pytest.mark.slow
def test_a_killed_tune_resumes_the_same_study(tmp_path):
    out = tmp_path / "tune"
    worker = tune_process(out, "--trials", "4")
    deadline = time.monotonic() + 180
    # Killed in the middle of trial 1, while it trains: trial 0 is complete.
    while not (out / "trials" / "1" / "run.json").is_file():
        assert worker.poll() is None, worker.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "trial 1 did not start"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.communicate()

    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    killed = trials_of(storage, "lstm-digits")[1]
    assert killed.state == TrialState.RUNNING, "nobody has noticed yet"

    result = tune(trials=2, out=out, progress=False, hidden=16, **TINY)

    trials = trials_of(storage, "lstm-digits")
    assert trials[1].state == TrialState.FAIL
    assert trials[1].user_attrs["failure"] == f"its process (pid {worker.pid}) ended during the trial"
    assert result.trials_run == [2], "the numbers continue; the failed trial is made up for"
    assert [t.state != TrialState.FAIL for t in trials] == [True, False, True]


@pytest.mark.slow
def test_ctrl_c_stops_the_tune_and_records_the_trial(tmp_path):
    out = tmp_path / "tune"
    worker = tune_process(out, "--trials", "3")
    deadline = time.monotonic() + 180
    while not (out / "trials" / "0" / "run.json").is_file():
        assert worker.poll() is None and time.monotonic() < deadline, "trial 0 did not start"
        time.sleep(0.05)
    worker.send_signal(signal.SIGINT)
    stderr = worker.communicate(timeout=120)[1]

    assert worker.returncode == 130, stderr[-3000:]
    assert "tune interrupted; a trial in progress is recorded as failed" in stderr
    assert "Traceback" not in stderr
    [trial] = trials_of(f"sqlite:///{(out / 'study.db').resolve()}", "lstm-digits")
    assert trial.state == TrialState.FAIL and trial.user_attrs["failure"] == "interrupted (Ctrl-C)"


@pytest.mark.parametrize("url", ["postgresql://tuner:secret@127.0.0.1:1/study", "sqlite:////proc/no-such/study.db",
                                 "nosuchdb://host/study"])
def test_a_storage_that_cannot_be_opened_is_one_clear_line(tmp_path, capsys, url):
    assert main(["tune", *TINY_FLAGS, "--trials", "1", "--out", str(tmp_path), "--storage", url]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: cannot open the study storage ") and error.count("\n") == 1
    assert "secret" not in error and ("***" in error or "secret" not in url)
    assert "check that" in error
    with pytest.raises(StudyStorageError, match="cannot open the study storage"):
        tune(trials=1, out=tmp_path, storage=url, **TINY)


def test_a_study_of_another_model_is_refused(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="mine", direction="minimize")
    study.set_user_attr("model", "cnn")
    with pytest.raises(StudyStorageError, match="tunes model 'cnn', not 'lstm'; pass another --study-name"):
        tune(trials=1, out=tmp_path, storage=storage, study_name="mine", **TINY)


@pytest.mark.slow
def test_two_processes_share_one_postgresql_study(tmp_path, postgres_url):
    outputs = [finish(worker) for worker in two_tuners(tmp_path, postgres_url, "pg")]

    check_shared_study(trials_of(postgres_url, "pg"), tmp_path, 4)
    assert all(f"study pg in {postgres_url}" in output for output in outputs)
