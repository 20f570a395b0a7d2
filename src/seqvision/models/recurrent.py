"""Recurrent classifiers that read an image as a sequence of rows (or columns)."""

from __future__ import annotations

import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.models.registry import register_model
from seqvision.models.scan import ImageScan


@register_model("lstm")
class LSTMClassifier(nn.Module):
    """LSTM over the rows of the image, last hidden state -> dropout -> linear (seed 000)."""

    def __init__(self, image_shape: tuple[int, int], num_classes: int, *, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.2, scan: str = "rows") -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.scan = ImageScan(scan, image_shape)
        # nn.LSTM applies its own dropout only between stacked layers, so it is off for one layer.
        self.lstm = nn.LSTM(self.scan.features, hidden, num_layers=layers, batch_first=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    @classmethod
    def from_config(cls, config: TrainConfig, image_shape: tuple[int, int], num_classes: int) -> LSTMClassifier:
        return cls(image_shape, num_classes, hidden=config.hidden, layers=config.layers,
                   dropout=config.dropout, scan=config.scan)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: (B, H, W) -> sequences (B, T, F) -> outputs (B, T, hidden) -> logits (B, num_classes)
        sequences = self.scan(images)
        outputs, _ = self.lstm(sequences)
        return self.head(self.dropout(outputs[:, -1]))
