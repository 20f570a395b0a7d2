"""Batches drawn from a whole split held in memory, with no per-sample Python work in the hot loop."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Normalisation:
    """Pixel statistics of the training split, after scaling to [0, 1]; saved with every run for evaluation."""

    mean: float
    std: float

    @classmethod
    def of(cls, images: np.ndarray) -> Normalisation:
        scaled_std = float(images.std(dtype=np.float64)) / 255.0
        # A blank training set would divide by zero; a unit std leaves it merely centred.
        return cls(mean=float(images.mean(dtype=np.float64)) / 255.0, std=scaled_std if scaled_std > 0 else 1.0)


class InMemoryBatches:
    """Iterate (images, labels) batches from one uint8 tensor of shape (N, H, W).

    Each batch is gathered with one index operation and normalised as a whole. With `shuffle`, the order
    is a permutation seeded by (seed, epoch): the same run sees the same batches, every sample exactly
    once per epoch. The training loop calls `set_epoch` at the start of each epoch and records finished
    batches in `batches_done`; Lightning saves `state_dict()` in checkpoints, so a run resumed from the
    middle of an epoch continues that epoch's permutation where it stopped.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, normalisation: Normalisation, *,
                 shuffle: bool = False, seed: int = 0) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        # np.require copies only arrays torch cannot share: read-only buffers (np.frombuffer), strided views.
        self.images = torch.from_numpy(np.require(images, np.uint8, ["C", "W"]))
        self.labels = torch.from_numpy(np.require(labels, np.int64, ["C", "W"]))
        self.batch_size = batch_size
        self.normalisation = normalisation
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.batches_done = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_done = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        count = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        first, self.batches_done = self.batches_done * self.batch_size, 0
        for start in range(first, count, self.batch_size):
            yield self.batch(order[start:start + self.batch_size])

    def batch(self, index: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `index`, normalised: images (B, H, W) float, labels (B,)."""
        index = torch.as_tensor(index)
        # uint8 -> float in [0, 1], then standardised with the training split's statistics
        images = self.images[index].float().div_(255.0).sub_(self.normalisation.mean).div_(self.normalisation.std)
        return images, self.labels[index]
