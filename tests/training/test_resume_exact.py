"""A run stopped anywhere and resumed ends bit-identical to the run that never stopped, for every schedule.

The reference is the uninterrupted run itself: same seed, data and config. Compared are the final weights
(torch.equal, not allclose), every history.csv value except the seconds, and the test metrics.
"""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

import seqvision
from seqvision.errors import TrainingInterruptedError
from seqvision.runs import RunFolder, read_checkpoint
from seqvision.runs.history import read_history
from seqvision.training.datamodule import BATCHES_PER_GROUP

SCHEDULERS = ["none", "plateau", "cosine", "onecycle"]
# Digits: 1,293 training images in batches of 128 -> 11 steps per epoch. Dropout 0.2 draws from torch's
# generator on every step, so a resume that lost the random state would diverge.
SETTINGS = {"model": "stacked-lstm", "dataset": "digits", "hidden": 16, "dropout": 0.2, "epochs": 4, "lr": 0.01,
            "report": False, "progress": False}


STEPS_PER_EPOCH = 11


class SignalAtStep(L.Callback):
    """Send this process a real SIGINT during a given optimiser step (counted from 1), as a user's Ctrl-C would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step + 1 == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def end_of_group(step: int) -> int:
    """The global step after which training stops when Ctrl-C comes during `step`: the last of its group of
    BATCHES_PER_GROUP batches, groups counted from each epoch's first batch."""
    epoch_start = (step - 1) // STEPS_PER_EPOCH * STEPS_PER_EPOCH
    into_epoch = step - epoch_start
    return epoch_start + min(math.ceil(into_epoch / BATCHES_PER_GROUP) * BATCHES_PER_GROUP, STEPS_PER_EPOCH)


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    return read_checkpoint(RunFolder(run_dir).checkpoint("last"))["state_dict"]


def history_without_seconds(run_dir) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(RunFolder(run_dir).history_path)]


def assert_same_run(resumed, reference, resumed_metrics, reference_metrics):
    assert history_without_seconds(resumed) == history_without_seconds(reference)
    weights, expected = final_weights(resumed), final_weights(reference)
    assert weights.keys() == expected.keys()
    for name in expected:
        assert torch.equal(weights[name], expected[name]), f"{name} differs"
    assert resumed_metrics == reference_metrics


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """One uninterrupted run per scheduler."""
    root = tmp_path_factory.mktemp("reference")
    return {name: seqvision.train(scheduler=name, out=root / name, **SETTINGS) for name in SCHEDULERS}


@pytest.mark.slow
@pytest.mark.parametrize("scheduler", SCHEDULERS)
# Inside the first group of epoch 1, the last batch of that group, inside epoch 2, the last batch of epoch 2.
@pytest.mark.parametrize("step", [5, 8, 17, 22])
def test_ctrl_c_at_any_step_then_resume_is_exact(tmp_path, references, scheduler, step):
    out = tmp_path / "run"
    with pytest.raises(TrainingInterruptedError, match="--resume"):
        seqvision.train(scheduler=scheduler, out=out, callbacks=[SignalAtStep(step)], **SETTINGS)
    saved = read_checkpoint(RunFolder(out).checkpoint("interrupted"))
    assert saved["global_step"] == end_of_group(step), "the stop happens at the group boundary after the signal"
    resumed = seqvision.train(resume=out, progress=False, report=False)
    reference = references[scheduler]
    assert_same_run(out, reference.run_dir, resumed.test_metrics, reference.test_metrics)


# The kill often lands between an epoch's row in history.csv and its last.ckpt, a gap the resume names in a warning.
@pytest.mark.filterwarnings("ignore::seqvision.errors.SeqvisionWarning")
@pytest.mark.slow
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_killed_process_resumes_from_its_last_checkpoint_exactly(tmp_path, references, scheduler):
    out = tmp_path / "run"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in SETTINGS.items()
             if key not in ("report", "progress")]
    command = [sys.executable, "-m", "seqvision", "train", *flags, f"--scheduler={scheduler}", "--out", str(out),
               "--no-progress", "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    run = RunFolder(out)
    deadline = time.monotonic() + 120
    while len(read_history(run.history_path)) < 2:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, "training never finished two epochs"
        time.sleep(0.01)
    process.kill()  # SIGKILL: no handler runs, as in a power cut or the OOM killer
    process.wait(timeout=30)
    if len(read_history(run.history_path)) == SETTINGS["epochs"]:
        pytest.skip("the run finished before it could be killed")
    resumed = seqvision.train(resume=out, progress=False, report=False)
    reference = references[scheduler]
    assert_same_run(out, reference.run_dir, resumed.test_metrics, reference.test_metrics)


@pytest.mark.slow
def test_ctrl_c_then_resume_is_exact_with_a_moving_average_of_the_weights(tmp_path):
    # The average (--ema-decay) is part of the saved state and its decay follows the global step, so a resumed run
    # must continue it exactly; a lost or restarted average would change the validation loss and the test.
    settings = {**SETTINGS, "ema_decay": 0.9}
    reference = seqvision.train(out=tmp_path / "reference", **settings)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterruptedError, match="--resume"):
        seqvision.train(out=out, callbacks=[SignalAtStep(17)], **settings)
    resumed = seqvision.train(resume=out, progress=False, report=False)
    assert any(name.startswith("averaged.") for name in final_weights(out))
    assert_same_run(out, reference.run_dir, resumed.test_metrics, reference.test_metrics)


FIXTURES = Path(__file__).parents[1] / "fixtures" / "runs-one-batch-at-a-time"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["interrupted-in-epoch-1", "killed-after-epoch-2"])
def test_a_run_saved_one_batch_at_a_time_resumes_exactly(tmp_path, references, name):
    """Run folders stopped by seqvision before it handed Lightning its batches in groups (made at 7d24d71 by
    tests/fixtures/runs-one-batch-at-a-time/make.py, with SETTINGS and the cosine schedule) resume to the run that
    never stopped: their global step, which the schedule follows, and their place in the epoch carry over."""
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    resumed = seqvision.train(resume=out, progress=False, report=False)
    reference = references["cosine"]
    assert_same_run(out, reference.run_dir, resumed.test_metrics, reference.test_metrics)
