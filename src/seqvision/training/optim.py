"""Optimisers and learning-rate schedules, chosen by name in the config.

cosine and onecycle are pure functions of the global step and the planned total of steps, applied before
every step, so a resumed run gets its rates from the step it reached and not from a counter restored
beside it. Extending a finished run (train --resume RUN --epochs N) plans them over the new total: the
remaining steps get the rates a run planned for N epochs from the start would have at those steps (for
cosine the rate rises again from 0 to that value). plateau keeps its state (best loss, patience, current
rate) across a resume and an extension; none is constant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from seqvision.config import TrainConfig

# torch.optim.lr_scheduler.OneCycleLR's defaults, which this schedule reproduces (tested against it).
ONECYCLE_WARMUP_FRACTION = 0.3
ONECYCLE_START_DIVISOR = 25.0
ONECYCLE_END_DIVISOR = 1e4
ONECYCLE_MOMENTUM = (0.85, 0.95)


def build_optimizer(config: TrainConfig, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    # fused: one kernel updates each parameter, where the default runs a dozen element-wise passes over it; on the
    # CNN's 3.2M parameters that took a training step from 48 to 32 ms (docs/benchmarks.md). RMSprop has none.
    if config.optimizer == "adam":
        # Decoupled weight decay (AdamW); with weight_decay 0 it is exactly Adam.
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "rmsprop":
        # alpha=0.9 and eps=1e-7 are Keras's RMSprop defaults, which the seed programs were tuned with.
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=0.9, eps=1e-7, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay,
                           fused=True)


def build_plateau_scheduler(config: TrainConfig,
                            optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.ReduceLROnPlateau | None:
    """plateau, the one schedule driven by validation rather than steps: stepped with the validation loss after
    every epoch."""
    if config.scheduler != "plateau":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)


@dataclass(frozen=True)
class StepSchedule:
    """The learning rate (and for onecycle the momentum) at any global step of a run of `total_steps`."""

    kind: str
    peak_lr: float
    total_steps: int

    def at(self, step: int) -> tuple[float, float | None]:
        if self.kind == "cosine":
            progress = min(step, self.total_steps) / self.total_steps
            return self.peak_lr * (1 + math.cos(math.pi * progress)) / 2, None
        start = self.peak_lr / ONECYCLE_START_DIVISOR
        end = start / ONECYCLE_END_DIVISOR
        low, high = ONECYCLE_MOMENTUM
        warmup_end = ONECYCLE_WARMUP_FRACTION * self.total_steps - 1
        step = min(step, self.total_steps - 1)
        if step <= warmup_end:
            progress = step / warmup_end
            return _cosine_between(start, self.peak_lr, progress), _cosine_between(high, low, progress)
        progress = (step - warmup_end) / (self.total_steps - 1 - warmup_end)
        return _cosine_between(self.peak_lr, end, progress), _cosine_between(low, high, progress)

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        lr, momentum = self.at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if momentum is None:
                continue
            if "betas" in group:
                group["betas"] = (momentum, *group["betas"][1:])
            elif "momentum" in group:
                group["momentum"] = momentum


def step_schedule(config: TrainConfig, total_steps: int) -> StepSchedule | None:
    if config.scheduler in ("cosine", "onecycle"):
        return StepSchedule(config.scheduler, config.lr, total_steps)
    return None


def _cosine_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) / 2 * (math.cos(math.pi * progress) + 1)
