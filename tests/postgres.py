"""A real PostgreSQL server for tests: Debian's package, installed with apt-get when missing, started on
127.0.0.1 on a free port with a throw-away data folder, and stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port

APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (/usr/lib/postgresql/<version>/bin), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def install_postgres() -> Path:
    """Debian's postgresql, installed the first time a test needs it; skipped only where apt-get cannot run."""
    found = postgres_bin()
    if found is not None:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("PostgreSQL is not installed and apt-get needs root to install it")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        result = subprocess.run(command, capture_output=True, text=True, env=APT_ENV)
        if result.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed (exit {result.returncode}): {result.stderr[-500:]}")
    found = postgres_bin()
    assert found is not None, "apt-get installed postgresql but no initdb is under /usr/lib/postgresql"
    return found


def as_postgres(*argv: str) -> subprocess.CompletedProcess:
    """Run a server command as the `postgres` user: the server refuses to run as root."""
    command = list(argv) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed: {result.stdout[-1000:]}{result.stderr[-1000:]}"
    return result


@contextlib.contextmanager
def postgres_server(database: str = "seqvision") -> Iterator[str]:
    """A running server with an empty `database`; yields its URL (user postgres, no password, 127.0.0.1 only)."""
    bin_dir = install_postgres()
    root = Path(tempfile.mkdtemp(prefix="seqvision-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    try:
        as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {port} -k {root}"  # TCP on loopback only; the socket in the temp folder
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-o", options,
                    "-w", "start")
        try:
            as_postgres(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
            yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
        finally:
            as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
