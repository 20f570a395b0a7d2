"""ReNet (Visin et al., 2015): recurrent sweeps instead of convolutions, with no convolution anywhere.

Each ReNet layer cuts the image (or the previous layer's map) into non-overlapping 2x2 patches, runs a
bidirectional LSTM down and up every column of patches, then a bidirectional LSTM left and right along
every row of the result. Every output position has thereby seen the whole input. Two such layers, then a
dense classifier.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqvision.config import TrainConfig
from seqvision.models.registry import register_model, with_defaults
from seqvision.models.scan import check_image_batch, image_channels

PATCH = 2


class ReNetLayer(nn.Module):
    """Patches -> vertical bidirectional sweep -> horizontal bidirectional sweep."""

    def __init__(self, channels: int, hidden: int, patch: int = PATCH) -> None:
        super().__init__()
        self.patch = patch
        self.vertical = nn.LSTM(channels * patch * patch, hidden, batch_first=True, bidirectional=True)
        self.horizontal = nn.LSTM(2 * hidden, hidden, batch_first=True, bidirectional=True)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        # maps (B, H, W, C) -> patches (B, H/p, W/p, p*p*C) -> (B, H/p, W/p, 2*hidden)
        p = self.patch
        batch, height, width, channels = maps.shape
        # Pad to whole patches, as a 2x2 pool with padding='same' would.
        maps = F.pad(maps, (0, 0, 0, -width % p, 0, -height % p))
        rows, cols = maps.shape[1] // p, maps.shape[2] // p
        patches = maps.reshape(batch, rows, p, cols, p, channels).permute(0, 1, 3, 2, 4, 5).flatten(3)
        # every column is one sequence running down the rows
        columns = patches.transpose(1, 2).flatten(0, 1)
        swept, _ = self.vertical(columns)
        swept = swept.reshape(batch, cols, rows, -1).transpose(1, 2)
        # every row is one sequence running across the columns
        swept, _ = self.horizontal(swept.flatten(0, 1))
        return swept.reshape(batch, rows, cols, -1)


@register_model("renet")
class ReNetClassifier(nn.Module):
    """Pure-recurrent ReNet: stacked vertical+horizontal bidirectional LSTM sweeps over 2x2 patches -> dense."""

    defaults: ClassVar[dict] = {"hidden": 32, "layers": 2, "dropout": 0.2}
    scans: ClassVar[tuple[str, ...]] = ("rows",)
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, *, hidden: int | None = None,
                 layers: int | None = None, dropout: float | None = None) -> None:
        super().__init__()
        hidden, layers, dropout = with_defaults(self.defaults, hidden=hidden, layers=layers, dropout=dropout)
        self.image_shape = tuple(image_shape)
        channels = image_channels(image_shape)
        self.sweeps = nn.Sequential(*(ReNetLayer(channels if index == 0 else 2 * hidden, hidden)
                                      for index in range(layers)))
        height, width = image_shape[:2]
        for _ in range(layers):
            height, width = -(-height // PATCH), -(-width // PATCH)
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(height * width * 2 * hidden, 256), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(256, num_classes),
        )

    @classmethod
    def from_config(cls, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> ReNetClassifier:
        return cls(image_shape, num_classes, hidden=config.hidden, layers=config.layers, dropout=config.dropout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images (B, H, W) or (B, H, W, C) -> (B, H, W, 1 or C) -> maps (B, H/4, W/4, 2*hidden) -> logits (B, classes)
        check_image_batch(images, self.image_shape)
        return self.classifier(self.sweeps(images.unsqueeze(-1) if images.dim() == 3 else images))
