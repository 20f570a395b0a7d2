"""A small real model for the serving tests, and a real uvicorn server on 127.0.0.1 around it."""

import threading
import time

import httpx
import pytest
import uvicorn

import seqvision
from tests.servers import free_port


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """An LSTM trained on the 8x8 digits, good enough to read them (about 90% test accuracy)."""
    out = tmp_path_factory.mktemp("serving") / "lstm-digits"
    seqvision.train(model="lstm", dataset="digits", epochs=15, lr=0.01, hidden=32, out=out, progress=False,
                    report=False)
    return out


class RunningServer:
    """uvicorn serving an app in a background thread until stopped."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "RunningServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def server(digits_run):
    from seqvision.serving.app import create_app
    from seqvision.serving.predict import Predictor

    app = create_app(Predictor.open(digits_run), max_upload_bytes=2 * 2**20, max_batch=16)
    with RunningServer(app) as running:
        yield running
