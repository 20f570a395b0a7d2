"""Helpers for tests that run a real server on 127.0.0.1: a free port, and waiting for a process to answer."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, timeout: float, client: httpx.Client | None = None
                    ) -> httpx.Response:
    """GET url/health until it answers; fail with the server's stderr if the process exits or time runs out."""
    get = client.get if client is not None else httpx.get
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            stderr = process.communicate()[1]
            raise AssertionError(f"the server exited with {process.returncode}: {str(stderr)[-4000:]}")
        try:
            return get(f"{url}/health", timeout=2)
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the server did not answer within {timeout:.0f} s"
            time.sleep(0.1)
