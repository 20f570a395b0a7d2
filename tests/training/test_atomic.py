"""Files are replaced in one step: a failed write leaves the previous version and no temporary file."""

import pytest
import torch

from seqvision.atomic import atomic_path, write_text_atomic
from seqvision.training.callbacks import AtomicCheckpointIO


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "history.csv"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_failed_checkpoint_save_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    with pytest.raises(Exception):  # noqa: B017  (torch raises pickling errors of several types)
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "unsaveable": lambda: None}, path)
    saved = torch.load(path, weights_only=True)
    assert torch.equal(saved["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_written_files_get_normal_permissions(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
