"""benchmarks/report_speed.py: both versions write a real report of a real run, and the run itself is untouched."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import seqvision

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_report_is_timed_for_both_versions_on_a_copy_of_the_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    seqvision.train(model="lstm", dataset="digits", epochs=1, out=run, progress=False)
    before = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
    result = subprocess.run([sys.executable, str(REPOSITORY / "benchmarks" / "report_speed.py"), str(run),
                             "--versus", "HEAD", "--rounds", "1"], capture_output=True, text=True, timeout=300,
                            check=True)
    rows = re.findall(r"^\| (today|seqvision at \w+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$",
                      result.stdout, re.MULTILINE)
    assert [row[0] for row in rows] == ["today", rows[1][0]] and rows[1][0].startswith("seqvision at "), result.stdout
    for _, whole, *pictures in rows:
        assert 0 < sum(map(float, pictures)) <= float(whole), result.stdout
    assert re.search(r"^- whole report, seqvision at \w+ over today: [\d.]+x$", result.stdout, re.MULTILINE)
    assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == before, "the run folder was written to"
