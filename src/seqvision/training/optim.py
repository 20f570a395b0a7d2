"""Optimisers and learning-rate schedules, chosen by name in the config."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from seqvision.config import TrainConfig


def build_optimizer(config: TrainConfig, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        # Decoupled weight decay (AdamW); with weight_decay 0 it is exactly Adam.
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "rmsprop":
        # alpha=0.9 and eps=1e-7 are Keras's RMSprop defaults, which the seed programs were tuned with.
        return torch.optim.RMSprop(parameters, lr=config.lr, alpha=0.9, eps=1e-7, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> dict[str, Any] | None:
    """A Lightning `lr_scheduler` entry, or None for a constant learning rate."""
    if config.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
        return {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}
    if config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        return {"scheduler": scheduler, "interval": "step"}
    if config.scheduler == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total_steps)
        return {"scheduler": scheduler, "interval": "step"}
    return None
