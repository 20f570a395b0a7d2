from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Read once at start-up: some tests clear SEQVISION_DATA to isolate the dataset search.
REAL_DATA_ROOT = os.environ.get("SEQVISION_DATA")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite the files in tests/golden/ from the current output (review the diff)")


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """Compare text with tests/golden/NAME, or rewrite that file when run with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = Path(__file__).parent / "golden" / name
        if update:
            path.write_text(text)
        assert path.is_file(), f"missing golden file {path}; run pytest --update-golden and review it"
        assert text == path.read_text(), f"output differs from {path}; if intended, run pytest --update-golden"

    return check


@pytest.fixture
def mnist_root() -> Path:
    """The folder SEQVISION_DATA points at, when it holds the real MNIST files; the test is skipped otherwise."""
    root = REAL_DATA_ROOT
    if not root or not (Path(root) / "mnist").is_dir():
        pytest.skip("set SEQVISION_DATA to a folder holding mnist/ to run this test")
    return Path(root)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's headless Chromium, installed with apt-get the first time a test needs it (a fresh machine lacks it)."""
    path = shutil.which("chromium")
    if path is None:
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            result = subprocess.run(command, capture_output=True, text=True,
                                    env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if result.returncode != 0:
                pytest.fail(f"browser tests need Debian's chromium and `{' '.join(command)}` failed "
                            f"(exit {result.returncode}): {result.stderr[-500:]}")
        path = shutil.which("chromium")
    assert path, "apt-get installed chromium but it is not on PATH"
    return path
