"""The convolutional baseline that seed 002 compares the LSTM with."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.models.registry import register_model, with_defaults
from seqvision.models.scan import channels_first, check_image_batch, image_channels


def pooled_size(size: int, pools: int) -> int:
    """Side length after `pools` 2x2 max-pools with Keras's padding='same' (a partial window still counts)."""
    for _ in range(pools):
        size = math.ceil(size / 2)
    return size


@register_model("cnn")
class ConvClassifier(nn.Module):
    """Conv 5x5x32 -> pool -> conv 5x5x64 -> pool -> dense 1024 -> dropout 0.5 -> dense (seed 002)."""

    defaults: ClassVar[dict] = {"dropout": 0.5}
    scans: ClassVar[tuple[str, ...]] = ("rows",)
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, *, dropout: float | None = None) -> None:
        super().__init__()
        (dropout,) = with_defaults(self.defaults, dropout=dropout)
        self.image_shape = tuple(image_shape)
        # Seed 002 applies ReLU, then the pool. Max-pooling first gives the same values and gradients (ReLU is
        # monotonic, and neither order sends a gradient through a window whose maximum is not positive), and the
        # ReLU and its backward then run on a quarter of the values (tests/models/test_cnn.py, docs/benchmarks.md).
        self.features = nn.Sequential(
            nn.Conv2d(image_channels(image_shape), 32, 5, padding="same"), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(32, 64, 5, padding="same"), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(),
        )
        flat = 64 * pooled_size(image_shape[0], 2) * pooled_size(image_shape[1], 2)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, 1024), nn.ReLU(), nn.Dropout(dropout), nn.Linear(1024, num_classes),
        )

    @classmethod
    def from_config(cls, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> ConvClassifier:
        return cls(image_shape, num_classes, dropout=config.dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images (B, H, W) or (B, H, W, C) -> (B, 1 or C, H, W) -> features (B, 64, H/4, W/4) -> logits (B, classes)
        check_image_batch(images, self.image_shape)
        return self.classifier(self.features(channels_first(images)))
