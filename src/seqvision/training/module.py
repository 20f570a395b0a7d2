"""The LightningModule: the whole training step on one screen."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from seqvision.config import TrainConfig
from seqvision.errors import TrainingDivergedError
from seqvision.training.optim import build_optimizer, build_scheduler


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of any registered model on batches of (images, labels)."""

    def __init__(self, model: nn.Module, config: TrainConfig, run_info: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.config = config
        # Saved into every checkpoint so a checkpoint file alone says how to rebuild its model.
        self.run_info = run_info
        # Metric objects accumulate correct/total over the epoch, so the logged accuracy is exact.
        self.train_acc = MulticlassAccuracy(run_info["num_classes"], average="micro")
        self.val_acc = MulticlassAccuracy(run_info["num_classes"], average="micro")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self.model(images)
        loss = F.cross_entropy(logits, labels)
        if not torch.isfinite(loss):
            # Raised before backward, so no optimiser step sees it and the last checkpoint stays good.
            raise TrainingDivergedError(
                f"the training loss became {loss.item()} at epoch {self.current_epoch + 1}, batch {batch_idx + 1}. "
                "Lower --lr, set --clip-grad (e.g. 1.0), or use --scheduler onecycle to warm up."
            )
        self.train_acc(logits, labels)
        self.log_dict({"train_loss": loss, "train_acc": self.train_acc}, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self.model(images)
        self.val_acc(logits, labels)
        self.log_dict({"val_loss": F.cross_entropy(logits, labels), "val_acc": self.val_acc},
                      on_step=False, on_epoch=True, prog_bar=True)

    def on_train_epoch_start(self) -> None:
        self.trainer.train_dataloader.set_epoch(self.current_epoch)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Counted after the optimiser step, so a Ctrl-C checkpoint never skips a batch it did not learn from.
        self.trainer.train_dataloader.batches_done = batch_idx + 1

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.config, self.model.parameters())
        scheduler = build_scheduler(self.config, optimizer, int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["seqvision"] = {**self.run_info, "config": self.config.to_dict()}
