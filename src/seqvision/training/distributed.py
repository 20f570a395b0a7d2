"""Training on several processes or machines with Lightning's DDP: the strategy, who writes, and a lost peer.

A run on N processes is launched by torchrun (or SLURM, or any launcher that sets RANK, WORLD_SIZE,
MASTER_ADDR...), or on one machine by Lightning itself, which starts the extra processes when the first one
reaches `fit`. Every process loads the data, builds the same model and draws the same permutation of every
epoch; each trains on its shard of every global batch (seqvision.data.batches.shard_indices) and DDP averages
the gradients. Process 0 alone writes the run folder: it creates it, holds its lock, and writes the config,
history, checkpoints and test metrics. A collective that waits longer than `--dist-timeout` for a dead or stuck
peer ends in a PeerLostError instead of a hang.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy

from seqvision.config import TrainConfig
from seqvision.errors import ConfigError, PeerLostError


def world_size(config: TrainConfig) -> int:
    """Processes taking part in the run: processes per machine times machines."""
    return config.devices * config.num_nodes


def build_strategy(config: TrainConfig, accelerator: str) -> str | DDPStrategy:
    """Lightning's strategy: its default for one process, else DDP over gloo (CPU) or NCCL (GPUs)."""
    if config.strategy == "auto" and world_size(config) == 1:
        return "auto"
    return DDPStrategy(process_group_backend="nccl" if accelerator == "gpu" else "gloo",
                       timeout=timedelta(seconds=config.dist_timeout))


def check_launch(config: TrainConfig) -> None:
    """Refuse a torchrun launch whose process counts differ from --devices and --num-nodes, in their words."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:
        return
    started = {"per machine": int(os.environ.get("LOCAL_WORLD_SIZE", config.devices)),
               "in all": int(os.environ.get("WORLD_SIZE", world_size(config)))}
    asked = {"per machine": config.devices, "in all": world_size(config)}
    for what, count in started.items():
        if count != asked[what]:
            raise ConfigError(f"torchrun started {count} processes {what} but the run asks for {asked[what]} "
                              f"(--devices {config.devices} --num-nodes {config.num_nodes}); pass --devices equal "
                              "to torchrun's --nproc-per-node and --num-nodes equal to its --nnodes.")


def launch_rank(trainer: L.Trainer) -> int:
    """This process's rank, known before `fit` sets up the process group: 0 for the process a user started."""
    return trainer.node_rank * trainer.num_devices + trainer.local_rank


class AgreeOnRunFolder(L.Callback):
    """Hold the run folder path of process 0 once training starts, on every process.

    Without --out each process names a default folder after its own clock; process 0's is the one written."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.path = trainer.strategy.broadcast(self.path, src=0)


def is_peer_failure(error: BaseException) -> bool:
    """Whether `error` is a collective that failed because another process died or stopped answering."""
    if isinstance(error, torch.distributed.DistError):
        return True
    # gloo reports a closed connection or a timeout as a bare RuntimeError naming its own source file, except a
    # timeout that closes the connection first: that says only "Application timeout caused pair closure".
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in ("gloo", "pair closure"))


def peer_lost(error: BaseException, trainer: L.Trainer, config: TrainConfig, run_path: Path) -> PeerLostError:
    """The one-line error a surviving process stops with, saying what happened and how to continue."""
    return PeerLostError(
        f"process {trainer.global_rank} of {trainer.world_size}: another process of this run died or stopped "
        f"answering ({_first_sentence(error)}); the run is incomplete. Start all processes again with "
        f"--resume {run_path} to continue from its last epoch; if a process was only slow, raise --dist-timeout "
        f"(now {config.dist_timeout} s)."
    )


def _first_sentence(error: BaseException) -> str:
    # "[.../gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:9639. This is typically..."
    line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.sub(r"^\[[^\]]*\]\s*", "", line).split(". ")[0].rstrip(".")


def reduce_sum(trainer: L.Trainer, values: list[float]) -> list[float]:
    """`values` summed over all processes, in float64 (the identity on one process)."""
    if trainer.world_size == 1:
        return values
    # On the run's device: NCCL reduces only GPU tensors.
    local = torch.tensor(values, dtype=torch.float64, device=trainer.strategy.root_device)
    total: Any = trainer.strategy.reduce(local, reduce_op="sum")
    return total.tolist()
