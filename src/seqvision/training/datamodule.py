"""The run's batches as a LightningDataModule: Lightning's own interface around seqvision's in-memory batches.

The batches stay seqvision's (`seqvision.data.batches`): a whole split lives in one uint8 tensor and each
batch is one gather, where a Dataset returning one sample per __getitem__ costs a Python call per image.
"""

from __future__ import annotations

import lightning as L
import torch

from seqvision.data.batches import InMemoryBatches, RunBatches


class InMemoryDataModule(L.LightningDataModule):
    def __init__(self, batches: RunBatches) -> None:
        super().__init__()
        self.batches = batches

    def setup(self, stage: str) -> None:
        # Called on every process once the process group exists: each trains and validates on its own shard.
        # The test set is predicted whole, by process 0 alone (seqvision.experiments.train_test).
        for batches in (self.batches.train, self.batches.val):
            batches.shard(self.trainer.global_rank, self.trainer.world_size)

    def train_dataloader(self) -> InMemoryBatches:
        return self.batches.train

    def val_dataloader(self) -> InMemoryBatches:
        return self.batches.val

    def test_dataloader(self) -> InMemoryBatches:
        return self.batches.test

    def transfer_batch_to_device(self, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device,
                                 dataloader_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        # The batches are always (images, labels): moved as such, without Lightning's walk through any collection
        # and its protocol checks, for what is a no-op on the CPU (docs/benchmarks.md: framework overhead).
        images, labels = batch
        non_blocking = device.type == "cuda"
        return images.to(device, non_blocking=non_blocking), labels.to(device, non_blocking=non_blocking)
