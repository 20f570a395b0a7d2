"""A full disk stops training with one line that says so, and never leaves a half-written checkpoint (a real
small tmpfs, a real training process)."""

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from seqvision.errors import DiskFullError
from seqvision.runs.checkpoint import read_checkpoint, write_checkpoint
from seqvision.runs.folder import RunFolder

pytestmark = pytest.mark.slow

# Measured: a default LSTM(128) run on digits writes checkpoints of about 870 KB (weights and Adam state), and
# the files written before the first checkpoint (run.json, config.yaml, summary.txt, history.csv, curves.png,
# .lock) take under 100 KB. 700 KiB holds the latter but not one checkpoint.
RUN_TMPFS = "700k"


@pytest.fixture
def small_tmpfs(tmp_path) -> Iterator[Callable[[str], Path]]:
    """mount(size) -> a fresh tmpfs of that size; every one is unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"tmpfs{len(mounted)}"
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.fail(f"these tests need to mount a tmpfs (as root); `mount` failed with exit "
                        f"{result.returncode}: {result.stderr.strip()}")
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        for folder in reversed(mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def leftovers(folder: Path) -> list[str]:
    """Temporary files of seqvision's atomic writes (.NAME.XXXX.tmp.SUFFIX) in `folder`."""
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_training_on_a_full_disk_stops_with_one_clear_line(small_tmpfs, tmp_path):
    disk = small_tmpfs(RUN_TMPFS)
    out = disk / "run"
    command = [sys.executable, "-m", "seqvision", "train", "--dataset", "digits", "--epochs", "3",
               "--no-progress", "--no-report", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "enforce fail" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    found = re.match(r"error: the disk is full: writing checkpoint (\S+) needs ([\d.]+) MiB and (\S+) has "
                     r"([\d.]+) MiB free; nothing was written under that name\. No epoch had been saved yet: "
                     r"free some space, delete \S+ and train again\.$", errors[0])
    assert found, errors[0]
    run = RunFolder(out)
    path, needed, folder, free = Path(found[1]), float(found[2]), Path(found[3]), float(found[4])
    assert path.resolve() in {run.checkpoint("best").resolve(), run.checkpoint("last").resolve()}
    assert folder.resolve() == run.checkpoints_dir.resolve()
    assert needed > free > 0
    assert 0.5 < needed < 2, "a default LSTM(128) checkpoint with its Adam state is about 0.8 MiB"

    assert leftovers(run.checkpoints_dir) == []
    assert leftovers(run.path) == []
    assert list(run.checkpoints_dir.iterdir()) == [], "no checkpoint fitted, and none is there half-written"
    for name in ("run.json", "config.yaml", "summary.txt"):
        assert (out / name).is_file(), f"{name} fits on the disk and is written before any checkpoint"
    assert json.loads(run.info_path.read_text())["status"] == "disk full"


def test_a_full_disk_keeps_the_previous_checkpoint_intact(small_tmpfs):
    disk = small_tmpfs("1m")
    path = disk / "checkpoints" / "best.ckpt"
    write_checkpoint({"state_dict": {"model.weight": torch.arange(1000.0)}, "seqvision": {"format": 1}}, path)
    before = path.read_bytes()
    assert read_checkpoint(path)["state_dict"]["model.weight"][999] == 999.0

    filler = disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(disk).free - 32 * 1024))
    assert shutil.disk_usage(disk).free <= 64 * 1024
    bigger = {"state_dict": {"model.weight": torch.randn(100_000)}, "seqvision": {"format": 1}}  # ~400 KB
    with pytest.raises(DiskFullError) as full:
        write_checkpoint(bigger, path)

    message = str(full.value)
    assert isinstance(full.value, OSError)
    assert "\n" not in message
    assert message.startswith(f"the disk is full: writing checkpoint {path} needs 0.4 MiB and {path.parent} has ")
    assert re.search(r"has 0\.[01] MiB free; the file already there is intact\.$", message), message
    assert path.read_bytes() == before, "the previous checkpoint is byte-for-byte intact"
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"], "no temporary file is left"

    filler.unlink()  # space freed: the same write now succeeds
    write_checkpoint(bigger, path)
    assert torch.equal(read_checkpoint(path)["state_dict"]["model.weight"], bigger["state_dict"]["model.weight"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.ckpt"]
