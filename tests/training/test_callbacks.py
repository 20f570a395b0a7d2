"""EpochHistory's curves.png: redrawn at most every REDRAW_SECONDS during training, always when training ends or
stops, so a fast epoch does not wait for matplotlib; and a run folder that moved keeps its best checkpoint."""

import shutil

import lightning as L
import pytest

import seqvision
from seqvision.runs.checkpoint import read_checkpoint
from seqvision.runs.folder import RunFolder
from seqvision.training.callbacks import EpochHistory

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Digits at batch 128: 11 steps an epoch, each epoch well under the default REDRAW_SECONDS.
SETTINGS = {"model": "lstm", "dataset": "digits", "hidden": 16, "epochs": 3, "lr": 0.01, "report": False,
            "progress": False}


class CurvesAtEpochStart(L.Callback):
    """The bytes of curves.png (None while it does not exist) as each epoch starts; optionally fail at one."""

    def __init__(self, curves_path, fail_at_epoch: int | None = None) -> None:
        self.curves_path = curves_path
        self.fail_at_epoch = fail_at_epoch
        self.seen: list[bytes | None] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(self.curves_path.read_bytes() if self.curves_path.is_file() else None)
        if trainer.current_epoch == self.fail_at_epoch:
            raise RuntimeError("stopped by the test")


def test_fast_epochs_leave_the_curves_to_the_end_of_training(tmp_path):
    out = tmp_path / "run"
    watcher = CurvesAtEpochStart(RunFolder(out).curves_path)
    seqvision.train(out=out, callbacks=[watcher], **SETTINGS)
    assert watcher.seen == [None, None, None]
    assert RunFolder(out).curves_path.read_bytes().startswith(PNG_SIGNATURE)


def test_curves_follow_every_epoch_once_the_redraw_interval_has_passed(tmp_path, monkeypatch):
    monkeypatch.setattr(EpochHistory, "REDRAW_SECONDS", 0.0)
    out = tmp_path / "run"
    watcher = CurvesAtEpochStart(RunFolder(out).curves_path)
    seqvision.train(out=out, callbacks=[watcher], **SETTINGS)
    first, after_one, after_two = watcher.seen
    assert first is None
    assert after_one.startswith(PNG_SIGNATURE) and after_two.startswith(PNG_SIGNATURE)
    assert after_one != after_two, "the second epoch's row was drawn"
    assert RunFolder(out).curves_path.read_bytes() != after_two, "the last epoch's row was drawn"


def test_a_run_that_stops_with_an_error_still_draws_its_finished_epochs(tmp_path):
    out = tmp_path / "run"
    watcher = CurvesAtEpochStart(RunFolder(out).curves_path, fail_at_epoch=2)
    with pytest.raises(RuntimeError, match="stopped by the test"):
        seqvision.train(out=out, callbacks=[watcher], **SETTINGS)
    assert watcher.seen == [None, None, None]
    assert RunFolder(out).curves_path.read_bytes().startswith(PNG_SIGNATURE)


class BestCheckpointAtStart(L.Callback):
    def on_train_start(self, trainer, pl_module):
        checkpoints = trainer.checkpoint_callback
        self.score, self.path = float(checkpoints.best_model_score), checkpoints.best_model_path


def test_a_moved_run_folder_resumes_knowing_its_best_checkpoint(tmp_path, recwarn):
    first = tmp_path / "first" / "run"
    seqvision.train(out=first, **{**SETTINGS, "epochs": 2})
    # best.ckpt's callback (the one that monitors the validation loss); last.ckpt's has no best score to keep.
    saved = {key: state for key, state in read_checkpoint(RunFolder(first).checkpoint("last"))["callbacks"].items()
             if key.startswith("ModelCheckpoint") and "val_loss" in key}
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(first, moved)
    seen = BestCheckpointAtStart()
    seqvision.train(resume=moved, epochs=3, callbacks=[seen], progress=False, report=False)
    (state,) = saved.values()
    # Without it, Lightning forgets the best score of a checkpoint saved in another folder, and epoch 3 would
    # replace best.ckpt whatever its validation loss.
    assert seen.score == float(state["best_model_score"])
    assert seen.path == str(RunFolder(moved).checkpoint("best"))
    assert not [warning for warning in recwarn if "dirpath has changed" in str(warning.message)]
