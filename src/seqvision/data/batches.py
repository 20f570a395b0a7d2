"""Batches drawn from a whole split held in memory, with no per-sample Python work in the hot loop, and the
three streams of them a run uses: train, validation, test."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from seqvision.config import TrainConfig
from seqvision.data.augment import Augmentation, Warp, apply_warp, batch_generator
from seqvision.data.registry import augment_shift
from seqvision.data.splits import ImageSplits, stratified_split
from seqvision.errors import ConfigError

# Validation and test batches. Larger ones are no faster on a CPU, and a batch's activations are resident at once:
# at 1000 the CNN's first two feature maps alone took 200 MB.
EVAL_BATCH_SIZE = 256
# Pixels counted at a time by `pixel_statistics`; bincount widens them to 8 bytes each, so a chunk costs 8 MiB.
STATISTICS_CHUNK = 1 << 20


@dataclass(frozen=True)
class Normalisation:
    """Pixel statistics of the training split, after scaling to [0, 1]; saved with every run for evaluation."""

    mean: float
    std: float

    @classmethod
    def of(cls, images: np.ndarray) -> Normalisation:
        mean, std = pixel_statistics(images)
        # A blank training set would divide by zero; a unit std leaves it merely centred.
        return cls(mean=mean / 255.0, std=std / 255.0 if std > 0 else 1.0)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 pixels -> float in [0, 1] -> standardised with the training split's statistics."""
        return images.float().div_(255.0).sub_(self.mean).div_(self.std)


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of every pixel value of uint8 images (N, H, W) or (N, H, W, C).

    Computed from how often each of the 256 values occurs, summed exactly in integers: no float copy of the
    images (ndarray.std makes one, 8 bytes a pixel: 340 MB for MNIST's training split), and the exact values,
    which ndarray.mean and .std round to the same float or one a unit in the last place away.
    """
    if not isinstance(images, np.ndarray):
        # A folder streamed from its files (seqvision.data.streaming.FileImages) keeps running sums of its pixels.
        return float(images.mean(dtype=np.float64)), float(images.std(dtype=np.float64))
    pixels = images.reshape(-1)
    counts = np.zeros(256, np.int64)
    for start in range(0, len(pixels), STATISTICS_CHUNK):
        counts += np.bincount(pixels[start:start + STATISTICS_CHUNK], minlength=256)
    values = np.arange(256, dtype=np.int64)
    # Python integers: count * squares can overflow int64 beyond about 12 million pixels.
    count, total, squares = int(counts.sum()), int(counts @ values), int(counts @ values**2)
    return total / count, math.sqrt((count * squares - total * total) / (count * count))


class InMemoryBatches:
    """Iterate (images, labels) batches from one uint8 tensor of shape (N, H, W).

    Each batch is gathered with one index operation and normalised as a whole. With `shuffle`, the order
    is a permutation seeded by (seed, epoch): the same run sees the same batches, every sample exactly
    once per epoch. The training loop calls `set_epoch` at the start of each epoch and records finished
    batches in `batches_done`; Lightning saves `state_dict()` in checkpoints, so a run resumed from the
    middle of an epoch continues that epoch's permutation where it stopped.

    With `max_shift` N > 0, every image of a batch is moved by its own random offset of up to N pixels
    in each direction, the uncovered border filled with background (0): the classic MNIST augmentation.
    The offsets are seeded by (seed, epoch, batch), so a resumed epoch sees the same shifts. With `augment`,
    every image is then also rotated, scaled, distorted or mirrored (seqvision.data.augment), seeded alike.

    Under distributed training `shard(rank, world_size)` makes it yield only that process's part of each
    global batch of `world_size * batch_size` images (`shard_indices`); batch numbers and `batches_done`
    then count global batches, the same on every process.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, normalisation: Normalisation, *,
                 shuffle: bool = False, seed: int = 0, max_shift: int = 0,
                 augment: Augmentation | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if not 0 <= max_shift < min(images.shape[1:3]):
            raise ConfigError(f"--augment-shift {max_shift} does not fit {images.shape[1]}x{images.shape[2]} "
                              "images; choose a shift smaller than the image side (2 suits MNIST).")
        self.images = self.hold(images)
        self.labels = torch.from_numpy(np.require(labels, np.int64, ["C", "W"]))
        self.batch_size = batch_size
        self.normalisation = normalisation
        self.shuffle = shuffle
        self.seed = seed
        self.max_shift = max_shift
        self.augment = augment
        self.epoch = 0
        self.batches_done = 0
        self.shard(rank=0, world_size=1)

    @staticmethod
    def hold(images: np.ndarray) -> torch.Tensor:
        """The pixels as the uint8 tensor batches are gathered from (indexed by `batch`)."""
        # np.require copies only arrays torch cannot share: read-only buffers (np.frombuffer), strided views.
        return torch.from_numpy(np.require(images, np.uint8, ["C", "W"]))

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.batches_done = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batches_done = state["epoch"], state["batches_done"]

    def shard(self, rank: int, world_size: int) -> None:
        """Yield from now on only process `rank`'s part of every global batch (see `shard_indices`)."""
        if world_size > 1 and len(self.labels) < world_size:
            raise ConfigError(f"a split of {len(self.labels)} images cannot give each of {world_size} processes a "
                              "batch; use fewer processes (--devices, --num-nodes) or more images.")
        self.rank, self.world_size = rank, world_size
        self.bounds = global_batch_bounds(len(self.labels), batch_size=self.batch_size, world_size=world_size)

    def global_batch_size(self, number: int) -> int:
        """Images in batch `number` summed over all processes."""
        start, end = self.bounds[number]
        return end - start

    def __len__(self) -> int:
        return len(self.bounds)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        first = self.batches_done  # planned_batches resumes from here
        for number, (index, shifts) in enumerate(self.planned_batches(), start=first):
            yield self.batch(index, shifts, self.warp_of(number))

    def planned_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(sample indices, shifts) of this epoch's batches still to come, in order; the streaming loader
        (seqvision.data.streaming) decodes the same batches from files."""
        count = len(self.labels)
        if self.shuffle:
            generator = torch.Generator().manual_seed(self._epoch_key())
            order = torch.randperm(count, generator=generator)
        else:
            order = torch.arange(count)
        first, self.batches_done = self.batches_done, 0
        shards = shard_indices(order, self.batch_size, self.rank, self.world_size)
        for number in range(first, len(self)):
            start, end = self.bounds[number]
            # Shifts are drawn for the whole global batch, so each image moves as it would in one process.
            shifts = self._shifts(number, end - start)
            part = rank_slice(end - start, self.rank, self.world_size)
            yield shards[number], None if shifts is None else shifts[part]

    def _epoch_key(self) -> int:
        """One number per (seed, epoch): the root of that epoch's shuffle and of its batches' shifts."""
        return self.seed * 1_000_003 + self.epoch

    def _shifts(self, number: int, size: int) -> torch.Tensor | None:
        if not self.max_shift:
            return None
        generator = torch.Generator().manual_seed(self._epoch_key() * 100_003 + number)
        return torch.randint(-self.max_shift, self.max_shift + 1, (size, 2), generator=generator)

    def warp_of(self, number: int) -> Warp | None:
        """Batch `number`'s random rotations, scalings, distortions and flips (`augment`), drawn like the shifts
        for the whole global batch, this process's part of them; None without augmentation."""
        if self.augment is None:
            return None
        start, end = self.bounds[number]
        drawn = self.augment.draw(end - start, self.images.shape[1], self.images.shape[2],
                                  batch_generator(self.seed, self.epoch, number))
        return drawn.select(rank_slice(end - start, self.rank, self.world_size))

    def batch(self, index: torch.Tensor | np.ndarray, shifts: torch.Tensor | None = None,
              warp: Warp | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at `index`, each moved by its (down, right) row of `shifts` if given, then resampled
        through `warp` if given, then normalised: images (B, H, W) or (B, H, W, C) float, labels (B,)."""
        index = torch.as_tensor(index)
        images = self.images[index]
        if shifts is not None:
            images = shift_images(images, shifts)
        if warp is not None:
            images = apply_warp(images, warp)
        return self.normalisation.apply(images), self.labels[index]


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move image i down by shifts[i, 0] and right by shifts[i, 1] pixels (negative: up, left), filling with 0."""
    # images (B, H, W) or (B, H, W, C), shifts (B, 2) -> the same shape. Every window of the zero-padded batch is
    # a view (unfold copies nothing), so the result is one copy of a window per image. That halved the batching
    # of a default MNIST epoch against gathering each pixel through three broadcast index tensors
    # (docs/benchmarks.md). A colour image's channels move together.
    margin = int(shifts.abs().max()) if len(shifts) else 0
    count, height, width = images.shape[:3]
    channels_pad = (0, 0) if images.dim() == 4 else ()
    padded = torch.nn.functional.pad(images, (*channels_pad, margin, margin, margin, margin))
    # (B, 2m+1, 2m+1, [C,] H, W): window (a, b) of image i is that image moved down by m - a and right by m - b
    windows = padded.unfold(1, height, 1).unfold(2, width, 1)
    moved = windows[torch.arange(count), margin - shifts[:, 0], margin - shifts[:, 1]]
    return moved.permute(0, 2, 3, 1).contiguous() if images.dim() == 4 else moved


# Sharding for training on several processes: pure arithmetic on positions in an epoch's order, shared by every
# loader that feeds seqvision's distributed training.
def global_batch_bounds(count: int, batch_size: int, world_size: int) -> list[tuple[int, int]]:
    """(start, end) positions in an epoch's order of each global batch of `world_size * batch_size` samples.

    The last global batch may be smaller; one with fewer samples than processes joins the batch before it, so
    that splitting it can never leave a process with an empty batch. With one process these are the usual
    batches of `batch_size`.
    """
    starts = list(range(0, count, world_size * batch_size))
    if len(starts) > 1 and count - starts[-1] < world_size:
        starts.pop()
    return list(zip(starts, [*starts[1:], count], strict=True))


def rank_slice(size: int, rank: int, world_size: int) -> slice:
    """Process `rank`'s part of a global batch of `size` samples: contiguous, sizes differing by at most one."""
    base, extra = divmod(size, world_size)
    first = rank * base + min(rank, extra)
    return slice(first, first + base + (rank < extra))


def shard_indices(order: torch.Tensor, batch_size: int, rank: int, world_size: int) -> list[torch.Tensor]:
    """Process `rank`'s batches of one epoch, cut from `order`, the epoch's sample order that every process draws
    alike (the same seeded permutation).

    Each global batch (`global_batch_bounds`) is split among the processes (`rank_slice`): together the shards
    hold every sample of `order` exactly once, every process gets the same number of batches (DDP waits for all
    of them at every step) and none gets an empty one, provided `len(order) >= world_size`.
    """
    return [order[start:end][rank_slice(end - start, rank, world_size)]
            for start, end in global_batch_bounds(len(order), batch_size, world_size)]


@dataclass
class RunBatches:
    train: InMemoryBatches
    val: InMemoryBatches
    test: InMemoryBatches
    normalisation: Normalisation


def limit(images: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    return (images[:count], labels[:count]) if count else (images, labels)


def split_batches(config: TrainConfig, splits: ImageSplits) -> RunBatches:
    """Hold out a stratified, seeded part of the training set for validation; the test set stays unseen."""
    (train_images, train_labels), (test_images, test_labels) = train_and_test(config, splits)
    if config.val_on_test:
        print("warning: --val-on-test validates on the test set, as seed 002 does; early stopping and the best "
              "checkpoint then see the test data, so the test accuracy is optimistic.", file=sys.stderr)
        val_images, val_labels = test_images, test_labels
    else:
        keep, held_out = validation_split(train_labels, config)
        val_images, val_labels = train_images[held_out], train_labels[held_out]
        train_images, train_labels = train_images[keep], train_labels[keep]
    normalisation = Normalisation.of(train_images) if config.normalise == "standardise" else Normalisation(0.0, 1.0)
    return RunBatches(
        train=batches_of(train_images, train_labels, config.batch_size, normalisation,
                         shuffle=True, seed=config.seed, max_shift=augment_shift(config),
                         augment=Augmentation.from_config(config)),
        val=batches_of(val_images, val_labels, EVAL_BATCH_SIZE, normalisation),
        test=eval_batches(test_images, test_labels, normalisation),
        normalisation=normalisation,
    )


def train_and_test(config: TrainConfig, splits: ImageSplits) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The (images, labels) a run trains on and is tested on: the official splits, or with `cv_folds`, the
    training set minus one stratified fold, and that fold."""
    train_images, train_labels = limit(splits.train_images, splits.train_labels, config.train_limit)
    if not config.cv_folds:
        return (train_images, train_labels), limit(splits.test_images, splits.test_labels, config.test_limit)
    from sklearn.model_selection import StratifiedKFold

    # The same seed in every fold of one cross-validation, so the folds partition the training set.
    folds = StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed)
    kept, held_out = list(folds.split(train_labels, train_labels))[config.cv_fold]
    return (train_images[kept], train_labels[kept]), (train_images[held_out], train_labels[held_out])


def validation_split(labels: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out). `last` holds out the final fraction in file order, as Keras's
    `validation_split` does; `stratified` holds out a seeded fraction of every class."""
    if config.val_split == "last":
        count = len(labels) - round(len(labels) * config.val_fraction)
        return np.arange(count), np.arange(count, len(labels))
    return stratified_split(labels, config.val_fraction, config.seed)


def eval_batches(images: np.ndarray, labels: np.ndarray, normalisation: Normalisation) -> InMemoryBatches:
    return batches_of(images, labels, EVAL_BATCH_SIZE, normalisation)


def batches_of(images: np.ndarray, labels: np.ndarray, batch_size: int, normalisation: Normalisation,
               **options: Any) -> InMemoryBatches:
    """Batches of images held in memory, or of a folder too large to hold (seqvision.data.streaming.FileImages),
    decoded from its files by DataLoader workers in the same order."""
    from seqvision.data.streaming import FileImages, StreamingBatches

    if isinstance(images, FileImages):
        return StreamingBatches(images, labels, batch_size, normalisation, **options)
    return InMemoryBatches(images, labels, batch_size, normalisation, **options)
