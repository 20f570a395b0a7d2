"""Saved runs that cannot be used give a clear error, and nothing already written is touched."""

import json
import shutil

import pytest

import seqvision
from seqvision.errors import RunFolderError
from seqvision.runs.folder import RunFolder


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "run"
    seqvision.train(model="lstm", dataset="digits", epochs=1, hidden=16, out=out, progress=False)
    return out


@pytest.fixture
def copy_of_run(saved_run, tmp_path):
    return shutil.copytree(saved_run, tmp_path / "copy")


def test_missing_checkpoint(copy_of_run):
    RunFolder(copy_of_run).checkpoint("best").unlink()
    with pytest.raises(RunFolderError, match=r"has no best checkpoint .*missing.*--checkpoint last"):
        seqvision.evaluate(copy_of_run)
    assert seqvision.evaluate(copy_of_run, checkpoint="last")["test_samples"] == 360


def test_run_from_another_format_version(copy_of_run):
    info_path = RunFolder(copy_of_run).info_path
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(RunFolderError, match="run-folder format 99, and this version of seqvision reads format 1"):
        seqvision.evaluate(copy_of_run)
    assert json.loads(info_path.read_text())["format"] == 99, "the refused run folder is left as it was"


def test_damaged_checkpoint(copy_of_run):
    RunFolder(copy_of_run).checkpoint("best").write_bytes(b"not a checkpoint")
    with pytest.raises(RunFolderError, match="cannot read checkpoint"):
        seqvision.evaluate(copy_of_run)


def test_unknown_checkpoint_name(copy_of_run):
    with pytest.raises(Exception, match="unknown checkpoint 'newest'; choose one of: best, last, interrupted"):
        seqvision.evaluate(copy_of_run, checkpoint="newest")


def test_resume_refuses_changes_to_what_defines_the_run(copy_of_run):
    with pytest.raises(Exception, match=r"\['hidden'\] cannot change"):
        seqvision.train(resume=copy_of_run, hidden=64)


def test_val_on_test_warns(tmp_path, capsys):
    seqvision.train(model="lstm", dataset="digits", epochs=1, hidden=16, val_on_test=True,
                    out=tmp_path / "run", progress=False)
    assert "warning: --val-on-test validates on the test set" in capsys.readouterr().err


def test_resuming_a_finished_run_asks_for_more_epochs(copy_of_run):
    with pytest.raises(Exception, match=r"has already trained 1 of its 1 epochs; pass --epochs N with N > 1"):
        seqvision.train(resume=copy_of_run)
