"""One process trains in a run folder at a time: a second one is refused at once with the first one's pid, and
the lock of a killed process is taken over (real processes, real flock)."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import seqvision
from seqvision.cli import main
from seqvision.errors import RunLockedError
from seqvision.runs.checkpoint import read_checkpoint
from seqvision.runs.folder import RunFolder

pytestmark = pytest.mark.slow

HOLD_LOCK = """
import sys
from seqvision.runs.folder import RunFolder

with RunFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def epochs_recorded(run: RunFolder) -> int:
    with open(run.history_path, newline="") as handle:
        return len(list(csv.DictReader(handle)))


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the process ended before {what}: {process.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_lock_holder(path: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    assert line == "locked\n", (line, holder.communicate())
    return holder


# The kill can land between an epoch's row in history.csv and its last.ckpt, a gap the resume names in a warning.
@pytest.mark.filterwarnings("ignore::seqvision.errors.SeqvisionWarning")
def test_a_second_trainer_is_refused_then_takes_over_a_killed_ones_lock(tmp_path, capsys):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "seqvision", "train", "--dataset", "digits", "--epochs", "1000",
               "--scheduler", "none", "--no-progress", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run = RunFolder(out)
    try:
        wait_for(lambda: run.checkpoint("last").exists() and run.history_path.exists(), process,
                 "the first end-of-epoch checkpoint")
        history = run.history_path.read_bytes()

        started = time.monotonic()
        with pytest.raises(RunLockedError) as refused:
            seqvision.train(resume=out, epochs=2000, progress=False, report=False)
        assert time.monotonic() - started < 30, "refused at once, not after waiting for the lock"
        message = str(refused.value)
        assert f"(pid {process.pid})" in message and f"kill {process.pid}" in message
        assert "\n" not in message and str(out) in message

        assert main(["train", "--resume", str(out), "--epochs", "2000", "--no-progress", "--no-report"]) == 2
        err = capsys.readouterr().err
        assert f"error: {out} is being trained by another process (pid {process.pid})" in err
        assert "Traceback" not in err
        assert process.poll() is None, "the refused attempts left the running training alone"
        assert run.history_path.read_bytes()[: len(history)] == history
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert run.lock_path.read_text().strip() == str(process.pid), "the killed process left its .lock behind"
    assert run.read_info()["status"] == "running"

    done = read_checkpoint(run.resume_checkpoint())["epoch"] + 1
    epochs = max(done, epochs_recorded(run)) + 1
    result = seqvision.train(resume=out, epochs=epochs, progress=False, report=False)
    assert result.epochs_trained == epochs
    assert epochs_recorded(run) == epochs
    info = run.read_info()
    assert info["status"] == "finished" and info["epochs_trained"] == epochs
    assert run.lock_path.read_text().strip() == str(os.getpid()), "the stale lock was taken over"


def test_run_folder_lock_across_processes(tmp_path):
    holder = start_lock_holder(tmp_path)
    try:
        with pytest.raises(RunLockedError) as refused, RunFolder(tmp_path).lock():
            pytest.fail("the lock is held by another process")
        assert f"pid {holder.pid}" in str(refused.value)
        assert f"kill {holder.pid}" in str(refused.value)
        assert holder.poll() is None
    finally:
        holder.communicate("\n", timeout=30)
    assert holder.returncode == 0

    with RunFolder(tmp_path).lock():
        assert RunFolder(tmp_path).lock_path.read_text() == f"{os.getpid()}\n"
        # While this process holds it, another process is refused and told this process's pid.
        probe = subprocess.run(
            [sys.executable, "-c", "import sys; from seqvision.runs.folder import RunFolder\n"
             "try:\n    with RunFolder(sys.argv[1]).lock(): print('acquired')\n"
             "except Exception as error: print(type(error).__name__, error)", str(tmp_path)],
            capture_output=True, text=True, timeout=120)
        assert probe.stdout.startswith(f"RunLockedError {tmp_path} is being trained by another process "
                                       f"(pid {os.getpid()})"), probe


def test_the_lock_of_a_killed_process_is_stale(tmp_path):
    holder = start_lock_holder(tmp_path)
    holder.kill()
    holder.communicate(timeout=30)
    assert RunFolder(tmp_path).lock_path.read_text().strip() == str(holder.pid)
    with RunFolder(tmp_path).lock():
        assert RunFolder(tmp_path).lock_path.read_text() == f"{os.getpid()}\n"
