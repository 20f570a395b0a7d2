"""The run's batches as a LightningDataModule: Lightning's own interface around seqvision's in-memory batches.

The batches stay seqvision's (`seqvision.data.batches`): a whole split lives in one uint8 tensor and each
batch is one gather, where a Dataset returning one sample per __getitem__ costs a Python call per image.
Training hands them to Lightning in groups (`BatchGroups`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import lightning as L
import torch

from seqvision.data.batches import InMemoryBatches, RunBatches

# Lightning's loop spends about 0.6 ms of Python on each batch it hands to training_step (the hooks of every
# callback, its progress counters, the optimiser's wrappers): a tenth of a default LSTM step under bf16. Handed
# this many batches at a time, it spends that once per group (docs/benchmarks.md: framework overhead). A
# Ctrl-C then stops at the end of the group, at most this many steps later.
BATCHES_PER_GROUP = 8

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchGroup(NamedTuple):
    """Consecutive training batches: numbers first to first + count - 1 of the epoch, produced as they are
    consumed, so that a group never holds more than one batch in memory."""

    first: int
    count: int
    batches: Iterator[Batch]

    @property
    def end(self) -> int:
        """The number of the batch after the group: the batches done once it is."""
        return self.first + self.count


class BatchGroups:
    """The training batches, `size` at a time, from where the epoch stands (`batches.batches_done`).

    Its state is the batches' own, so a checkpoint taken between two groups resumes at the next batch. Group g
    holds batches g * size to (g + 1) * size - 1, so that an epoch resumed after any batch b (a checkpoint saved
    before training grouped its batches can stop anywhere) goes on with group b // size, which is where Lightning,
    which runs validation after the epoch's last group by its number, counts it (module._count_in_groups)."""

    def __init__(self, batches: InMemoryBatches, size: int) -> None:
        self.batches = batches
        self.size = size

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.size)

    def __iter__(self) -> Iterator[BatchGroup]:
        first, total = self.batches.batches_done, len(self.batches)
        batches = iter(self.batches)
        start = first
        while start < total:
            end = min((start // self.size + 1) * self.size, total)
            yield BatchGroup(start, end - start, itertools.islice(batches, end - start))
            start = end

    def state_dict(self) -> dict[str, int]:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batches.load_state_dict(state)


class InMemoryDataModule(L.LightningDataModule):
    def __init__(self, batches: RunBatches) -> None:
        super().__init__()
        self.batches = batches

    def setup(self, stage: str) -> None:
        # Called on every process once the process group exists: each trains and validates on its own shard.
        # The test set is predicted whole, by process 0 alone (seqvision.experiments.train_test).
        for batches in (self.batches.train, self.batches.val):
            batches.shard(self.trainer.global_rank, self.trainer.world_size)

    def train_dataloader(self) -> BatchGroups:
        return BatchGroups(self.batches.train, BATCHES_PER_GROUP)

    def val_dataloader(self) -> InMemoryBatches:
        return self.batches.val

    def test_dataloader(self) -> InMemoryBatches:
        return self.batches.test

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # The batches are always (images, labels), or a group of them moved one by one as training reaches them:
        # moved as such, without Lightning's walk through any collection and its protocol checks, for what is a
        # no-op on the CPU (docs/benchmarks.md: framework overhead).
        if isinstance(batch, BatchGroup):
            return batch._replace(batches=(self._moved(pair, device) for pair in batch.batches))
        return self._moved(batch, device)

    @staticmethod
    def _moved(batch: Batch, device: torch.device) -> Batch:
        images, labels = batch
        non_blocking = device.type == "cuda"
        return images.to(device, non_blocking=non_blocking), labels.to(device, non_blocking=non_blocking)
