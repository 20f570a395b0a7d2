"""Ctrl-C during training saves a resumable checkpoint, and --resume finishes the run (real subprocess, real SIGINT)."""

import csv
import os
import signal
import subprocess
import sys
import time
import warnings

import lightning as L
import pytest
import torch

import seqvision
from seqvision.errors import TrainingInterruptedError
from seqvision.runs.folder import RunFolder


def epochs_recorded(run: RunFolder) -> list[str]:
    with open(run.history_path, newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_ctrl_c_then_resume(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "seqvision", "train", "--dataset", "digits", "--epochs", "1000",
               "--scheduler", "none", "--out", str(out)]
    # A job started in the background by a non-interactive shell (as CI may start this suite) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt; the child gets the default back.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    run = RunFolder(out)
    deadline = time.monotonic() + 120
    while not run.checkpoint("last").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training never finished an epoch"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert f"seqvision train --resume {out}" in stderr
    assert run.checkpoint("interrupted").is_file()
    assert RunFolder.open(out).read_info()["status"] == "interrupted"
    done = len(epochs_recorded(run))
    assert done >= 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = seqvision.train(resume=out, epochs=done + 2, progress=False)
    assert not [w for w in caught if "not resumable" in str(w.message)], "the batches should resume mid-epoch"
    assert epochs_recorded(run) == [str(epoch) for epoch in range(1, done + 3)]
    assert result.epochs_trained == done + 2
    assert not run.checkpoint("interrupted").exists()
    assert RunFolder.open(out).read_info()["status"] == "finished"
    assert result.test_metrics == seqvision.evaluate(out)


# The kill often lands between an epoch's row in history.csv and its last.ckpt, a gap the resume names in a warning.
@pytest.mark.filterwarnings("ignore::seqvision.errors.SeqvisionWarning")
@pytest.mark.slow
def test_a_killed_run_keeps_loadable_checkpoints_and_resumes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "seqvision", "train", "--dataset", "digits", "--epochs", "1000",
               "--scheduler", "none", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = RunFolder(out)
    deadline = time.monotonic() + 120
    while len(epochs_recorded(run) if run.history_path.exists() else []) < 3:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    process.kill()  # SIGKILL: no handler runs, as in a power cut or the OOM killer
    process.wait(timeout=30)

    for name in ("best", "last"):
        saved = torch.load(run.checkpoint(name), map_location="cpu", weights_only=True)
        assert "state_dict" in saved and "seqvision" in saved
    result = seqvision.train(resume=out, epochs=len(epochs_recorded(run)) + 1, progress=False)
    assert result.test_metrics == seqvision.evaluate(out)


class SignalAfterTheLastBatch(L.Callback):
    """A real SIGINT during the last epoch's validation, when no batch is left to stop before."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.current_epoch == trainer.max_epochs - 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_after_the_last_batch_finishes_the_run_and_still_stops(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterruptedError, match="finished its 2 epochs, so there is nothing to resume"):
        seqvision.train(dataset="digits", hidden=16, epochs=2, out=out, progress=False, report=False,
                        callbacks=[SignalAfterTheLastBatch()])
    run = RunFolder.open(out)
    assert run.read_info()["status"] == "finished" and epochs_recorded(run) == ["1", "2"]
    assert not run.checkpoint("interrupted").exists()
