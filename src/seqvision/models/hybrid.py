"""A CNN whose feature map an LSTM reads row by row: the working form of seed 003's idea.

Seed 003's Keras listing flattens the feature map and adds Dense(128) before its LSTM, so the LSTM gets no
time axis and the program cannot run. Here the rows of the last feature map are the time steps: each row
(64 channels x its width) goes through the same Dense(128) + ReLU + batch norm, then into the LSTM(128).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.models.cnn import pooled_size
from seqvision.models.pooling import sequence_pooling
from seqvision.models.registry import register_model, with_defaults
from seqvision.models.scan import channels_first, check_image_batch, image_channels


def conv_block(in_channels: int, channels: int) -> nn.Sequential:
    """Two 3x3 convolutions, each ReLU then batch norm (seed 003's order), then a 2x2 max-pool."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding="same"), nn.ReLU(), nn.BatchNorm2d(channels),
        nn.Conv2d(channels, channels, 3, padding="same"), nn.ReLU(), nn.BatchNorm2d(channels),
        nn.MaxPool2d(2, ceil_mode=True),
    )


@register_model("cnn-lstm")
class ConvLSTMClassifier(nn.Module):
    """Two conv blocks (32, 64 filters) whose feature-map rows feed an LSTM(128) -> dense (seed 003, working form)."""

    defaults: ClassVar[dict] = {"hidden": 128, "dropout": 0.2}
    scans: ClassVar[tuple[str, ...]] = ("rows", "columns")
    options: ClassVar[tuple[str, ...]] = ("pooling",)

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, *, hidden: int | None = None,
                 dropout: float | None = None, scan: str = "rows", pooling: str = "last") -> None:
        super().__init__()
        hidden, dropout = with_defaults(self.defaults, hidden=hidden, dropout=dropout)
        self.image_shape = tuple(image_shape)
        self.by_columns = scan == "columns"
        self.features = nn.Sequential(conv_block(image_channels(image_shape), 32), conv_block(32, 64))
        height, width = (pooled_size(side, 2) for side in image_shape[:2])
        step_width = 64 * (height if self.by_columns else width)
        self.embed = nn.Sequential(nn.Linear(step_width, 128), nn.ReLU())
        self.embed_norm = nn.BatchNorm1d(128)
        self.lstm = nn.LSTM(128, hidden, batch_first=True)
        self.pool = sequence_pooling(pooling, hidden, bidirectional=False)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    @classmethod
    def from_config(cls, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> ConvLSTMClassifier:
        return cls(image_shape, num_classes, hidden=config.hidden, dropout=config.dropout, scan=config.scan,
                   pooling=config.pooling)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images (B, H, W) or (B, H, W, C) -> maps (B, 64, H/4, W/4) -> steps (B, H/4, 64*W/4) -> (B, H/4, 128)
        # -> logits (B, classes)
        check_image_batch(images, self.image_shape)
        maps = self.features(channels_first(images))
        if self.by_columns:
            maps = maps.transpose(2, 3)
        steps = maps.permute(0, 2, 1, 3).flatten(2)
        embedded = self.embed(steps)
        # BatchNorm1d normalises channels on dim 1, so the 128 features go there and back.
        embedded = self.embed_norm(embedded.transpose(1, 2)).transpose(1, 2)
        outputs, _ = self.lstm(embedded)
        return self.head(self.dropout(self.pool(outputs)))
