"""Load on a real `seqvision serve` on 127.0.0.1: start-up time, resident memory, latency and throughput.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/serving_load.py RUN_DIR
        [--engine torch|onnx|both] [--requests 2000] [--concurrency 16 [C ...]] [--multipart]
        [--client threads|httpx|both] [--warm-up 50]

For each engine, one after the other: start `python -m seqvision serve RUN_DIR --host 127.0.0.1 --port P` as a
child process on a free port P; time process start until GET /health answers 200; read the server's VmRSS and
VmHWM from /proc/<pid>/status; send --warm-up requests of each payload one at a time (not counted; the first
JSON request's latency is shown); then, for each concurrency C, a burst of --requests POST /predict requests,
C in flight at a time, each carrying one MNIST test image (image i of the test set for request i) as JSON
{"pixels": 28x28}; with --multipart, also the same burst as multipart PNG uploads (field "image", preprocessed
by the server as a user's picture would be). Request bodies are encoded before the burst. A request counts as
an error unless it answers 200 with a prediction; "predictions = label" is the share of answers naming the test
label (a check that the server answers the image it was sent, not a benchmark of accuracy).

The load generator (--client): `threads`, C threads each with one keep-alive http.client connection (the
default: about 0.2 ms of CPU per request); `httpx`, one httpx.AsyncClient with C connections and C tasks (about
1 to 1.7 ms per request, and at C=16 a tail of requests that wait far longer than the server's queue explains).
On a 2-core machine the client takes CPU from the server, so the figures are those of server and client
together; `both` runs every burst with each client.

Latency is per request, from sending to the whole answer read, in ms; requests/s is the burst's count over its
wall time. CPU per request is the server's user + system time over the burst (/proc/<pid>/stat), and the load
generator's own (getrusage), each divided by the burst's requests. The memory read after the bursts is the
server's VmRSS then and its VmHWM (peak) over its life. The server is always stopped at the end, on an error,
on Ctrl-C and on SIGTERM. Prints Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import io
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench_data import require_dataset, run_config

HOST = "127.0.0.1"  # never anything else: the benchmark talks only to its own child process
MODEL_FILES = ("run.json", "bundle.json")
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 60.0
BOUNDARY = "seqvision-load-boundary"
CLIENTS = ("threads", "httpx")


@dataclass
class Payload:
    """One request body per test image, encoded before the burst, and the content type they share."""

    name: str
    content_type: str
    bodies: list[bytes]


@dataclass
class Burst:
    engine: str
    payload: str
    client: str
    concurrency: int
    requests: int
    errors: int
    latencies_ms: list[float]
    seconds: float
    server_cpu_s: float
    client_cpu_s: float
    correct: int
    error_examples: list[str] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass
class ServerStats:
    engine: str
    start_s: float
    first_request_ms: float
    rss_start_mib: float
    hwm_start_mib: float
    rss_end_mib: float = float("nan")
    hwm_end_mib: float = float("nan")
    bursts: list[Burst] = field(default_factory=list)


class Tally:
    """What a burst's workers record, shared between them (threads take the lock; async tasks need not)."""

    def __init__(self, requests: int, labels: np.ndarray) -> None:
        self.requests, self.labels = requests, labels
        self.next_index, self.correct = 0, 0
        self.latencies_ms: list[float] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stopping: list[int] = []  # signal numbers: Ctrl-C or SIGTERM asked the burst to stop

    def take(self) -> int | None:
        with self.lock:
            if self.next_index >= self.requests or self.stopping:
                return None
            self.next_index += 1
            return self.next_index - 1

    def record(self, index: int, seconds: float, status: int, text: str) -> None:
        ok, predicted, why = answer_ok(status, text)
        with self.lock:
            if ok:
                self.latencies_ms.append(1000 * seconds)
                self.correct += predicted == str(self.labels[index % len(self.labels)])
            else:
                self.errors.append(why)

    def fail(self, why: str) -> None:
        with self.lock:
            self.errors.append(why)


def answer_ok(status: int, text: str) -> tuple[bool, str | None, str]:
    """(ok, predicted class, why not) of one /predict answer."""
    if status != 200:
        return False, None, f"HTTP {status}: {text[:200]}"
    try:
        return True, str(json.loads(text)["predicted"]), ""
    except (ValueError, KeyError, TypeError):
        return False, None, f"HTTP 200 without a prediction: {text[:200]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def memory_mib(pid: int) -> tuple[float, float]:
    """The process's (VmRSS, VmHWM) in MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB
    return values["VmRSS"], values["VmHWM"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (/proc/<pid>/stat fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # the command name may hold spaces; fields after it start at 3
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (the load generator, all its threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def test_images(run_dir: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """The test images (uint8, N x H x W) and labels of the dataset the run or bundle was trained on."""
    from seqvision.data import load_dataset

    config = run_config(run_dir)
    data_dir = data_dir if data_dir is not None else config.data_dir
    require_dataset(config.dataset, data_dir)
    splits = load_dataset(config.dataset, data_dir)
    return np.ascontiguousarray(splits.test_images), np.asarray(splits.test_labels)


def json_payload(images: np.ndarray) -> Payload:
    return Payload("json", "application/json", [json.dumps({"pixels": image.tolist()}).encode() for image in images])


def multipart_payload(images: np.ndarray) -> Payload:
    from PIL import Image

    bodies = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image, mode="L").save(buffer, format="PNG")
        bodies.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="digit.png"\r\n'
                      f"Content-Type: image/png\r\n\r\n".encode() + buffer.getvalue()
                      + f"\r\n--{BOUNDARY}--\r\n".encode())
    return Payload("multipart PNG", f"multipart/form-data; boundary={BOUNDARY}", bodies)


class Server:
    """`python -m seqvision serve` as a child process; `stop` always ends it (terminate, then kill)."""

    def __init__(self, run_dir: str, engine: str, log_dir: Path) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"serve-{engine}.log"
        self.log = self.log_path.open("wb")
        command = [sys.executable, "-m", "seqvision", "serve", run_dir, "--host", HOST, "--port", str(self.port),
                   "--engine", engine]
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_healthy(self) -> float:
        """Seconds from process start until /health answers 200."""
        while True:
            if not self.alive():
                raise RuntimeError(f"the server exited with status {self.process.returncode} before answering "
                                   f"/health; its log ends:\n{self.log_tail()}")
            connection = http.client.HTTPConnection(HOST, self.port, timeout=2.0)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return time.perf_counter() - self.started
            except OSError:  # refused until uvicorn listens
                pass
            finally:
                connection.close()
            if time.perf_counter() - self.started > START_TIMEOUT_S:
                raise RuntimeError(f"the server did not answer /health within {START_TIMEOUT_S:.0f} s; its log "
                                   f"ends:\n{self.log_tail()}")
            time.sleep(0.01)

    def log_tail(self, lines: int = 15) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def post(connection: http.client.HTTPConnection, payload: Payload, body: bytes) -> tuple[int, str]:
    connection.request("POST", "/predict", body=body, headers={"Content-Type": payload.content_type})
    response = connection.getresponse()
    return response.status, response.read().decode(errors="replace")


def thread_burst(server: Server, payload: Payload, tally: Tally, concurrency: int) -> None:
    """`concurrency` threads, each with its own keep-alive connection, take request indices until none are left."""

    def worker() -> None:
        connection = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT_S)
        try:
            while (index := tally.take()) is not None:
                started = time.perf_counter()
                try:
                    status, text = post(connection, payload, payload.bodies[index % len(payload.bodies)])
                except (OSError, http.client.HTTPException) as error:
                    connection.close()  # reconnects on the next request
                    if not server.alive():
                        tally.stopping.append(0)
                    tally.fail(repr(error))
                    continue
                tally.record(index, time.perf_counter() - started, status, text)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short waits, so Ctrl-C and SIGTERM are handled promptly
    finally:
        tally.stopping.append(0)  # on an interrupt: no new requests; the ones in flight finish
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S)


async def httpx_burst(server: Server, payload: Payload, tally: Tally, concurrency: int) -> None:
    """One httpx.AsyncClient with `concurrency` connections and as many tasks."""
    import httpx

    # Ctrl-C and SIGTERM stop the burst here: no new requests, the ones in flight finish, then the caller's
    # `finally` stops the server. (Left to asyncio.run, Ctrl-C's cancellation did not end the burst.)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, tally.stopping.append, number)

    async def worker(client: httpx.AsyncClient) -> None:
        while (index := tally.take()) is not None:
            started = time.perf_counter()
            try:
                response = await client.post("/predict", content=payload.bodies[index % len(payload.bodies)],
                                             headers={"Content-Type": payload.content_type})
            except httpx.HTTPError as error:
                if not server.alive():
                    tally.stopping.append(0)
                tally.fail(repr(error))
                await asyncio.sleep(0)  # a refused connection fails without suspending: let the others run
                continue
            tally.record(index, time.perf_counter() - started, response.status_code, response.text)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", limits=limits,
                                     timeout=REQUEST_TIMEOUT_S) as client:
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)


def burst(server: Server, engine: str, payload: Payload, labels: np.ndarray, requests: int, concurrency: int,
          client: str) -> Burst:
    tally = Tally(requests, labels)
    pid = server.process.pid
    cpu_before, client_before, started = cpu_seconds(pid), own_cpu_seconds(), time.perf_counter()
    if client == "threads":
        thread_burst(server, payload, tally, concurrency)
    else:
        asyncio.run(httpx_burst(server, payload, tally, concurrency))
    seconds, client_after = time.perf_counter() - started, own_cpu_seconds()
    if not server.alive():
        raise RuntimeError(f"the server exited during the burst; its log ends:\n{server.log_tail()}")
    if signal.SIGINT in tally.stopping:
        raise KeyboardInterrupt
    if signal.SIGTERM in tally.stopping:
        raise SystemExit(128 + signal.SIGTERM)
    return Burst(engine, payload.name, client, concurrency, requests, len(tally.errors), tally.latencies_ms, seconds,
                 cpu_seconds(pid) - cpu_before, client_after - client_before, tally.correct, tally.errors[:3])


def warm_up(server: Server, payload: Payload, count: int) -> float:
    """Send `count` requests one at a time; return the first one's latency in ms."""
    first = float("nan")
    connection = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT_S)
    try:
        for i in range(count):
            started = time.perf_counter()
            status, text = post(connection, payload, payload.bodies[i % len(payload.bodies)])
            if i == 0:
                first = 1000 * (time.perf_counter() - started)
            ok, _, why = answer_ok(status, text)
            if not ok:
                raise RuntimeError(f"the warm-up request failed: {why}")
    finally:
        connection.close()
    return first


def measure_engine(args: argparse.Namespace, engine: str, payloads: list[Payload], labels: np.ndarray,
                   clients: tuple[str, ...], log_dir: Path) -> ServerStats:
    server = Server(args.run_dir, engine, log_dir)
    try:
        start_s = server.wait_healthy()
        rss, hwm = memory_mib(server.process.pid)
        first_ms = warm_up(server, payloads[0], max(1, args.warm_up))
        for payload in payloads[1:]:  # a payload's first request pays for lazy imports (multipart, PIL)
            warm_up(server, payload, max(1, args.warm_up))
        stats = ServerStats(engine, start_s, first_ms, rss, hwm)
        print(f"{engine}: healthy after {start_s:.2f} s, VmRSS {rss:.0f} MiB, first request {first_ms:.1f} ms",
              file=sys.stderr)
        for payload in payloads:
            for concurrency in args.concurrency:
                for client in clients:
                    result = burst(server, engine, payload, labels, args.requests, concurrency, client)
                    stats.bursts.append(result)
                    print(f"{engine} {payload.name} {client} c={concurrency}: {result.errors} errors, p50 "
                          f"{result.percentile(50):.2f} ms, p99 {result.percentile(99):.2f} ms, "
                          f"{result.requests / result.seconds:.0f} requests/s", file=sys.stderr)
                    for example in result.error_examples:
                        print(f"  error: {example}", file=sys.stderr)
        stats.rss_end_mib, stats.hwm_end_mib = memory_mib(server.process.pid)
        return stats
    finally:
        server.stop()


def tables(results: list[ServerStats]) -> str:
    lines = ["| engine | start-up (process start to /health) | first /predict | VmRSS after start "
             "| VmRSS after bursts | VmHWM (peak) |", "| --- | --- | --- | --- | --- | --- |"]
    for stats in results:
        lines.append(f"| {stats.engine} | {stats.start_s:.2f} s | {stats.first_request_ms:.1f} ms "
                     f"| {stats.rss_start_mib:.0f} MiB | {stats.rss_end_mib:.0f} MiB | {stats.hwm_end_mib:.0f} MiB |")
    lines += ["", "| engine | payload | client | concurrency | requests | errors | p50 ms | p99 ms | max ms "
              "| requests/s | CPU ms per request: server / client | predictions = label |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for stats in results:
        for result in stats.bursts:
            answered = len(result.latencies_ms)
            lines.append(f"| {result.engine} | {result.payload} | {result.client} | {result.concurrency} "
                         f"| {result.requests:,} | {result.errors} | {result.percentile(50):.2f} "
                         f"| {result.percentile(99):.2f} | {max(result.latencies_ms, default=float('nan')):.2f} "
                         f"| {result.requests / result.seconds:,.0f} "
                         f"| {1000 * result.server_cpu_s / result.requests:.2f} / "
                         f"{1000 * result.client_cpu_s / result.requests:.2f} "
                         f"| {100 * result.correct / answered if answered else 0:.2f}% |")
    return "\n".join(lines)


def raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (seqvision train --out) or a bundle")
    parser.add_argument("--engine", default="torch", choices=("torch", "onnx", "both"), help="[torch]")
    parser.add_argument("--requests", type=int, default=2000, help="requests per burst [2000]")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16], metavar="C",
                        help="requests in flight at a time; several values give one burst each [16]")
    parser.add_argument("--multipart", action="store_true", help="also a burst of multipart PNG uploads")
    parser.add_argument("--client", default="threads", choices=(*CLIENTS, "both"), help="load generator [threads]")
    parser.add_argument("--warm-up", type=int, default=50, help="uncounted requests before the bursts [50]")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="where the dataset's files are [the run's, then $SEQVISION_DATA]")
    args = parser.parse_args()
    path = Path(args.run_dir)
    if not path.is_dir() or not any((path / name).is_file() for name in MODEL_FILES):
        what = "does not exist" if not path.exists() else "is not a run folder (no run.json) or bundle"
        print(f"serving_load.py: {args.run_dir} {what}; train one first: seqvision train --model lstm "
              f"--dataset mnist --out {args.run_dir}", file=sys.stderr)
        return 2
    if args.requests < 1 or min(args.concurrency) < 1:
        print("serving_load.py: --requests and --concurrency must be at least 1.", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where started with SIGINT ignored (`cmd &`)

    from seqvision.errors import SeqvisionError

    try:
        images, labels = test_images(args.run_dir, args.data_dir)
    except SeqvisionError as error:
        print(f"serving_load.py: {error}", file=sys.stderr)
        return 2
    count = min(len(images), args.requests)
    payloads = [json_payload(images[:count])]
    if args.multipart:
        payloads.append(multipart_payload(images[:count]))
    engines = ("torch", "onnx") if args.engine == "both" else (args.engine,)
    clients = CLIENTS if args.client == "both" else (args.client,)
    results = []
    with tempfile.TemporaryDirectory(prefix="seqvision-load-") as log_dir:
        try:
            for engine in engines:
                results.append(measure_engine(args, engine, payloads, labels[:count], clients, Path(log_dir)))
        except RuntimeError as error:
            print(f"serving_load.py: {error}", file=sys.stderr)
            return 1
    print(f"{args.run_dir}: {args.requests:,} requests per burst, one {images.shape[1]}x{images.shape[2]} test "
          f"image each; warm-up {args.warm_up} requests; client and server on the same machine "
          f"({os.cpu_count()} cores).\n")
    print(tables(results))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("serving_load.py: interrupted; the server was stopped.", file=sys.stderr)
        raise SystemExit(130) from None
    except SystemExit as stop:
        if stop.code == 128 + signal.SIGTERM:
            print("serving_load.py: terminated; the server was stopped.", file=sys.stderr)
        raise
