"""Batches drawn from a whole split held in memory, with no per-sample Python work in the hot loop."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from seqvision.errors import ConfigError


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

    With `max_shift` N > 0, every image of a batch is moved by its own random offset of up to N pixels
    in each direction, the uncovered border filled with background (0): the classic MNIST augmentation.
    The offsets are seeded by (seed, epoch, batch), so a resumed epoch sees the same shifts.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, normalisation: Normalisation, *,
                 shuffle: bool = False, seed: int = 0, max_shift: int = 0) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 0 <= max_shift < min(images.shape[1:]):
            raise ConfigError(f"--augment-shift {max_shift} does not fit {images.shape[1]}x{images.shape[2]} "
                              "images; choose a shift smaller than the image side (2 suits MNIST).")
        # np.require copies only arrays torch cannot share: read-only buffers (np.frombuffer), strided views.
        self.images = torch.from_numpy(np.require(images, np.uint8, ["C", "W"]))
        self.labels = torch.from_numpy(np.require(labels, np.int64, ["C", "W"]))
        self.batch_size = batch_size
        self.normalisation = normalisation
        self.shuffle = shuffle
        self.seed = seed
        self.max_shift = max_shift
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
            generator = torch.Generator().manual_seed(self._epoch_key())
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        first, self.batches_done = self.batches_done, 0
        for number in range(first, len(self)):
            index = order[number * self.batch_size:(number + 1) * self.batch_size]
            yield self.batch(index, self._shifts(number, len(index)))

    def _epoch_key(self) -> int:
        """One number per (seed, epoch): the root of that epoch's shuffle and of its batches' shifts."""
        return self.seed * 1_000_003 + self.epoch

    def _shifts(self, number: int, size: int) -> torch.Tensor | None:
        if not self.max_shift:
            return None
        generator = torch.Generator().manual_seed(self._epoch_key() * 100_003 + number)
        return torch.randint(-self.max_shift, self.max_shift + 1, (size, 2), generator=generator)

    def batch(self, index: torch.Tensor | np.ndarray,
              shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `index`, each moved by its (down, right) row of `shifts` if given, then normalised:
        images (B, H, W) float, labels (B,)."""
        index = torch.as_tensor(index)
        images = self.images[index]
        if shifts is not None:
            images = shift_images(images, shifts)
        # uint8 -> float in [0, 1], then standardised with the training split's statistics
        images = images.float().div_(255.0).sub_(self.normalisation.mean).div_(self.normalisation.std)
        return images, self.labels[index]


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move image i down by shifts[i, 0] and right by shifts[i, 1] pixels (negative: up, left), filling with 0."""
    # images (B, H, W), shifts (B, 2) -> (B, H, W): one gather from a zero-padded copy, no per-image loop
    margin = int(shifts.abs().max()) if len(shifts) else 0
    count, height, width = images.shape
    padded = torch.nn.functional.pad(images, (margin, margin, margin, margin))
    rows = torch.arange(height) + (margin - shifts[:, :1])
    cols = torch.arange(width) + (margin - shifts[:, 1:])
    return padded[torch.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]
