"""Distributed training for real: CPU processes talking gloo over 127.0.0.1, launched by torchrun or by hand."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import seqvision
from seqvision.config import TrainConfig
from seqvision.data.batches import InMemoryBatches, Normalisation, global_batch_bounds, shard_indices
from seqvision.errors import ConfigError
from seqvision.runs.folder import RunFolder
from tests.servers import free_port

# Dropout off: every process draws the same dropout masks for its own shard, where one process draws them once
# for the whole batch, so with dropout the two runs would differ by design, not by rounding.
# float32: the comparison with one process below allows for float32's rounding, not for bf16's (`--precision auto`
# picks bf16 on a CPU that has it), which turns the half-batches' ~1e-7 differences into ~1e-3.
DIGITS = ["--dataset", "digits", "--hidden", "16", "--dropout", "0", "--lr", "0.01", "--seed", "1", "--precision", "32"]
PER_PROCESS_BATCH = 32
EPOCHS = 3


def history(run: RunFolder) -> list[dict[str, str]]:
    with open(run.history_path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the shards ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 65, 66, 67, 100, 129, 1293])
@pytest.mark.parametrize("batch_size", [1, 5, 32])
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shards_cover_the_epoch_exactly_once_in_equal_numbers_of_batches(count, batch_size, world_size):
    if count < world_size:
        return  # refused by InMemoryBatches.shard, tested below
    order = torch.randperm(count, generator=torch.Generator().manual_seed(count))
    shards = [shard_indices(order, batch_size, rank, world_size) for rank in range(world_size)]
    assert len({len(batches) for batches in shards}) == 1, "every process must take as many steps"
    assert all(len(batch) > 0 for batches in shards for batch in batches)
    assert sorted(int(i) for batches in shards for batch in batches for i in batch) == list(range(count))
    # Global batch k is the processes' k-th batches side by side, in the epoch's order.
    joined = torch.cat([torch.cat([batches[k] for batches in shards]) for k in range(len(shards[0]))])
    assert torch.equal(joined, order)
    # A full global batch gives each process exactly batch_size samples.
    for start, end in global_batch_bounds(count, batch_size, world_size)[:-1]:
        assert end - start >= world_size * batch_size


def test_a_tiny_last_global_batch_joins_the_one_before():
    # 65 = 2 * 32 + 1: alone, the last sample would leave process 1 with an empty batch.
    assert global_batch_bounds(65, 32, 2) == [(0, 65)]
    assert [len(b) for b in shard_indices(torch.arange(65), 32, 0, 2)] == [33]
    assert [len(b) for b in shard_indices(torch.arange(65), 32, 1, 2)] == [32]
    assert global_batch_bounds(129, 32, 2) == [(0, 64), (64, 129)]
    assert global_batch_bounds(130, 32, 2) == [(0, 64), (64, 128), (128, 130)]
    assert global_batch_bounds(130, 32, 3) == [(0, 96), (96, 130)]


def test_one_process_keeps_the_usual_batches():
    assert global_batch_bounds(103, 16, 1) == [(i, min(i + 16, 103)) for i in range(0, 103, 16)]


def test_sharded_batches_are_the_single_process_batches_split():
    # Images tagged by their label; shifts on, so the augmentation must also match the single-process run. 102
    # images: a last batch of 2 splits 1 + 1 (of 1 it would join the batch before, as one process does not).
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, size=(102, 8, 8), dtype=np.uint8), np.arange(102)
    norm = Normalisation(0.5, 0.25)

    def epoch(batch_size: int, rank: int, world_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        batches = InMemoryBatches(images, labels, batch_size, norm, shuffle=True, seed=5, max_shift=2)
        batches.shard(rank, world_size)
        batches.set_epoch(3)
        return list(batches)

    single = epoch(20, 0, 1)
    parts = [epoch(10, rank, 2) for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(single)
    for number, (whole_images, whole_labels) in enumerate(single):
        torch.testing.assert_close(torch.cat([p[number][0] for p in parts]), whole_images, rtol=0, atol=0)
        assert torch.equal(torch.cat([p[number][1] for p in parts]), whole_labels)


def test_a_split_smaller_than_the_process_count_is_refused():
    batches = InMemoryBatches(np.zeros((3, 4, 4), np.uint8), np.arange(3), 8, Normalisation(0.0, 1.0))
    with pytest.raises(ConfigError, match="3 images cannot give each of 4 processes"):
        batches.shard(0, 4)


def test_distributed_options_are_checked():
    with pytest.raises(ConfigError, match="--devices must be positive"):
        TrainConfig(devices=0).validate()
    with pytest.raises(ConfigError, match="--dist-timeout must be positive"):
        TrainConfig(dist_timeout=0).validate()
    with pytest.raises(ConfigError, match="unknown --strategy 'fsdp'"):
        TrainConfig(strategy="fsdp").validate()


# --- two processes under torchrun ---------------------------------------------------------------------------------

def torchrun(*arguments: str, processes: int = 2) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
            "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "seqvision", *arguments]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    command = torchrun("train", *DIGITS, "--epochs", str(EPOCHS), "--batch-size", str(PER_PROCESS_BATCH),
                       "--devices", "2", "--strategy", "ddp", "--ema-decay", "0.9", "--no-report", "--out", str(out))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-4000:]
    return RunFolder.open(out), finished


@pytest.mark.slow
def test_two_processes_write_one_complete_run_folder(ddp_run):
    run, finished = ddp_run
    assert [row["epoch"] for row in history(run)] == [str(e) for e in range(1, EPOCHS + 1)]
    assert sorted(p.name for p in run.checkpoints_dir.iterdir()) == ["best.ckpt", "last.ckpt"]
    info = run.read_info()
    assert (info["world_size"], info["status"], info["epochs_trained"]) == (2, "finished", EPOCHS)
    assert run.load_config().devices == 2
    for path in (run.summary_path, run.curves_path, run.test_metrics_path):
        assert path.is_file(), path
    # Process 0 alone reports: one line per epoch, one test result.
    assert finished.stderr.count(f"epoch 1/{EPOCHS} ") == 1, finished.stderr
    assert finished.stdout.count("test accuracy") == 1, finished.stdout
    assert json.loads(run.test_metrics_path.read_text()) == seqvision.evaluate(run.path)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(ddp_run, tmp_path):
    run, _ = ddp_run
    single = seqvision.train(TrainConfig(dataset="digits", hidden=16, dropout=0.0, lr=0.01, seed=1, precision="32",
                                         epochs=EPOCHS, batch_size=2 * PER_PROCESS_BATCH, ema_decay=0.9),
                             out=tmp_path / "single", progress=False, report=False)
    weights = [torch.load(RunFolder(path).checkpoint("last"), weights_only=True)["state_dict"]
               for path in (run.path, single.run_dir)]
    # The moving average of the weights (--ema-decay) is kept alike by each process, from gradients all-reduced.
    assert any(name.startswith("averaged.") for name in weights[1])
    difference = max(float((weights[0][name] - weights[1][name]).abs().max()) for name in weights[1])
    # Not bit-identical: the gradient of a global batch is summed in another order (two half-batch means,
    # averaged by gloo, against one mean), and float32 rounding differs by ~1e-7 per step; over 3 epochs of
    # 21 steps with Adam it reached 2.4e-7 (measured). 1e-5 leaves a wide margin and still catches a wrong
    # shard or plan: averaging the uneven last batch's halves unweighted (7 and 6 images) moved them by 1.1e-2.
    assert difference < 1e-5, difference
    for distributed, alone in zip(history(run), history(RunFolder(single.run_dir)), strict=True):
        for column in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert abs(float(distributed[column]) - float(alone[column])) < 1e-4, (column, distributed, alone)


@pytest.mark.slow
def test_lightning_starts_the_second_process_itself_and_one_folder_is_written(tmp_path):
    # No torchrun and no --out: the second process names a default folder after its own clock, and writes nothing.
    command = [sys.executable, "-m", "seqvision", "train", *DIGITS, "--epochs", "2", "--devices", "2", "--no-report"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-4000:]
    (folder,) = (tmp_path / "runs").iterdir()
    assert f"run folder: runs/{folder.name} " in finished.stdout
    run = RunFolder.open(folder)
    assert [row["epoch"] for row in history(run)] == ["1", "2"]
    assert run.read_info()["world_size"] == 2 and run.test_metrics_path.is_file()


@pytest.mark.slow
def test_torchrun_with_another_process_count_is_refused(tmp_path):
    command = torchrun("train", *DIGITS, "--epochs", "1", "--devices", "1", "--out", str(tmp_path / "run"))
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert finished.returncode != 0
    assert "error: torchrun started 2 processes per machine but the run asks for 1" in finished.stderr


# --- a peer that dies or hangs ------------------------------------------------------------------------------------

def by_hand(rank: int, port: int, out, timeout: int, run: list[str]) -> subprocess.Popen:
    """Process `rank` of two "machines" with one process each, started as any launcher would: by environment.
    `run` is ["--epochs", N] for a new run in `out`, or ["--resume", out, ...]."""
    environment = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank),
                   "LOCAL_RANK": "0", "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    new_run = [*DIGITS, "--scheduler", "none", "--num-nodes", "2", "--out", str(out)] if run[0] != "--resume" else []
    command = [sys.executable, "-m", "seqvision", "train", *new_run, *run, "--dist-timeout", str(timeout),
               "--no-report"]
    return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def lose_a_peer(out, fault: signal.Signals, timeout: int) -> tuple[subprocess.CompletedProcess, float]:
    """Train on two processes until an epoch is saved, then kill or freeze process 1; process 0's exit and the
    seconds it took to notice."""
    port = free_port()
    survivor, peer = (by_hand(rank, port, out, timeout, ["--epochs", "1000"]) for rank in (0, 1))
    try:
        deadline = time.monotonic() + 120
        while not RunFolder(out).checkpoint("last").is_file():
            assert survivor.poll() is None and peer.poll() is None, survivor.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the two processes never finished an epoch"
            time.sleep(0.05)
        peer.send_signal(fault)
        lost_at = time.monotonic()
        stdout, stderr = survivor.communicate(timeout=timeout + 60)
        waited = time.monotonic() - lost_at
        return subprocess.CompletedProcess(survivor.args, survivor.returncode, stdout, stderr), waited
    finally:
        for process in (survivor, peer):
            process.kill()
            process.communicate()


@pytest.mark.parametrize("message", [
    "[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:9639",
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 5000ms for recv operation",
    # What the survivor of a hung peer got under a loaded machine: the timeout closed the connection first.
    "Application timeout caused pair closure",
])
def test_gloo_errors_of_a_lost_peer_are_recognised(message):
    from seqvision.training.distributed import is_peer_failure

    assert is_peer_failure(RuntimeError(message))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


@pytest.mark.slow
@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_the_survivor_of_a_lost_peer_stops_with_a_clear_error(tmp_path, fault):
    timeout, out = 5, tmp_path / "run"
    survivor, waited = lose_a_peer(out, fault, timeout)
    assert survivor.returncode == 2, survivor.stderr[-3000:]
    # A killed peer closes its sockets and is noticed at once; a hung one when the timeout runs out.
    assert waited < timeout + 30
    assert "error: process 0 of 2: another process of this run died or stopped answering (" in survivor.stderr
    assert f"--resume {out}" in survivor.stderr and "Traceback" not in survivor.stderr, survivor.stderr[-3000:]
    assert RunFolder.open(out).read_info()["status"] == "peer lost"


@pytest.mark.slow
def test_a_run_that_lost_a_peer_resumes_on_two_processes(tmp_path):
    out = tmp_path / "run"
    lose_a_peer(out, signal.SIGKILL, timeout=5)
    done = len(history(RunFolder(out)))
    port = free_port()
    processes = [by_hand(rank, port, out, 30, ["--resume", str(out), "--epochs", str(done + 2)]) for rank in (0, 1)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr[-3000:]
    run = RunFolder.open(out)
    assert [row["epoch"] for row in history(run)] == [str(e) for e in range(1, done + 3)]
    assert (run.read_info()["status"], run.read_info()["epochs_trained"]) == ("finished", done + 2)
