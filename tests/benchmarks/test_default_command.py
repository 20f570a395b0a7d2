"""benchmarks/default_command.py against an earlier version: the version is taken out of git and really runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_earlier_version_runs_beside_today_and_trains_the_same_weights(mnist_root: Path) -> None:
    """HEAD's own src/, taken out of git, trains the same seed to the same test accuracy as the working tree's
    command: proof that the earlier variant ran a real seqvision, and that its table row and ratio are printed."""
    head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    result = subprocess.run([sys.executable, str(REPOSITORY / "benchmarks" / "default_command.py"), "--seeds", "0",
                             "--train-limit", "200", "--versus", "HEAD", "--", "--epochs", "1", "--test-limit",
                             "200", "--no-report"], capture_output=True, text=True, timeout=600, check=True)
    rows = dict(re.findall(r"^\| (defaults|seqvision at \w+) \| 0 \| [\d.]+ s \| ([\d.]+%) \|", result.stdout,
                           re.MULTILINE))
    assert set(rows) == {"defaults", f"seqvision at {head}"}, result.stdout
    changed = subprocess.run(["git", "-C", str(REPOSITORY), "status", "--porcelain", "src"], capture_output=True,
                             text=True, check=True).stdout
    if not changed:  # uncommitted changes to src/ may train other weights than HEAD's
        assert rows["defaults"] == rows[f"seqvision at {head}"], result.stdout
    assert re.search(rf"^- whole command, seqvision at {head} over the defaults: [\d.]+x$", result.stdout,
                     re.MULTILINE), result.stdout
