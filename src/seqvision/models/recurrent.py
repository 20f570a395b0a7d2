"""Recurrent classifiers that read an image as a sequence: rows, columns, or pixel by pixel.

One class, `RecurrentClassifier`, covers the family; each registered name fixes the recurrent layer
(LSTM, GRU or a plain tanh RNN), its directions and its default size.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.errors import ConfigError
from seqvision.models.cells import ExplicitLSTM, LSTMTrace
from seqvision.models.fused import fused_kernels
from seqvision.models.gru_sequence import GRU
from seqvision.models.pooling import FinalState, sequence_pooling
from seqvision.models.registry import register_model, with_defaults
from seqvision.models.scan import ImageScan

# GRU is an nn.GRU whose CPU training pass has a hand-written backward (models/gru_sequence.py).
FUSED_LAYERS = {"lstm": nn.LSTM, "gru": GRU, "rnn": nn.RNN}


def recurrent_layer(kind: str, features: int, hidden: int, layers: int, dropout: float, *,
                    bidirectional: bool = False, cell_activation: str = "tanh") -> nn.Module:
    """A batch-first recurrent layer returning (outputs, state). A non-tanh LSTM activation needs the explicit
    cell, which the fused kernels cannot do; dropout applies between stacked layers only."""
    between = dropout if layers > 1 else 0.0
    if cell_activation != "tanh":
        if kind != "lstm" or bidirectional:
            raise ConfigError(f"--cell-activation {cell_activation} needs the explicit LSTM cell, which exists "
                              "for unidirectional LSTMs only (models lstm and stacked-lstm).")
        return ExplicitLSTM(features, hidden, layers, between, activation=cell_activation)
    return FUSED_LAYERS[kind](features, hidden, num_layers=layers, batch_first=True, dropout=between,
                              bidirectional=bidirectional)


class RecurrentClassifier(nn.Module):
    """A recurrent net over the image sequence -> final state (or attention pooling) -> dropout -> linear."""

    kind: ClassVar[str] = "lstm"
    bidirectional: ClassVar[bool] = False
    defaults: ClassVar[dict] = {"hidden": 128, "layers": 1, "dropout": 0.2}
    scans: ClassVar[tuple[str, ...]] = ImageScan.MODES
    options: ClassVar[tuple[str, ...]] = ("pooling", "cell_activation")

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, *, hidden: int | None = None,
                 layers: int | None = None, dropout: float | None = None, scan: str = "rows",
                 pooling: str = "last", cell_activation: str = "tanh") -> None:
        super().__init__()
        hidden, layers, dropout = with_defaults(self.defaults, hidden=hidden, layers=layers, dropout=dropout)
        self.image_shape = tuple(image_shape)
        self.scan = ImageScan(scan, image_shape)
        self.rnn = recurrent_layer(self.kind, self.scan.features, hidden, layers, dropout,
                                   bidirectional=self.bidirectional, cell_activation=cell_activation)
        self.pool = sequence_pooling(pooling, hidden, self.bidirectional)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if self.bidirectional else 1), num_classes)

    @classmethod
    def cpu_autocast_pays(cls, config: TrainConfig) -> bool:
        # nn.LSTM has a bf16 kernel on the CPU (oneDNN's fused RNN): 0.57x its float32 step. The GRU's compiled loops
        # make their products in bf16 where the hidden size allows (0.73x its float32 step in benchmarks/gru_speed.py,
        # at float32's mean accuracy over three seeds: docs/results.md); without them autocast would run nn.GRU's
        # slow bf16 steps.
        # nn.RNN's bf16 steps took 1.14x its float32 ones, and the explicit LSTM runs float32 loops under autocast.
        if cls.kind == "gru":
            kernels = fused_kernels()
            return kernels is not None and kernels.bf16_products_available(config.hidden or cls.defaults["hidden"])
        return cls.kind == "lstm" and config.cell_activation == "tanh"

    @classmethod
    def from_config(cls, config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> RecurrentClassifier:
        return cls(image_shape, num_classes, hidden=config.hidden, layers=config.layers, dropout=config.dropout,
                   scan=config.scan, pooling=config.pooling, cell_activation=config.cell_activation)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images (B, H, W[, C]) -> sequences (B, T, F) -> outputs (B, T, dirs*H) -> pooled (B, dirs*H) -> logits (B, C)
        outputs, _ = self.rnn(self.scan(images))
        return self.head(self.dropout(self.pool(outputs)))

    @torch.no_grad()
    def step_probabilities(self, trace: LSTMTrace) -> torch.Tensor:
        """(B, T, C): the class probabilities the classifier would give if the sequence ended after each step."""
        return torch.softmax(self.head(trace.hidden), dim=-1)

    @torch.no_grad()
    def trace(self, images: torch.Tensor) -> LSTMTrace:
        """Gates and states of the last LSTM layer at every step, from the explicit cell with the same weights."""
        if self.kind != "lstm" or self.bidirectional:
            raise ConfigError(f"gate traces exist for unidirectional LSTMs; this model is a {type(self).__name__}.")
        explicit = self.rnn if isinstance(self.rnn, ExplicitLSTM) else ExplicitLSTM.like(self.rnn)
        return explicit.eval().trace(self.scan(images))


def reads_step_by_step(model: nn.Module) -> bool:
    """Whether the model's answer is read from a unidirectional LSTM's final state, so that every step of the
    sequence has an answer of its own (the report's row-by-row picture, the drawing page's curve)."""
    return (isinstance(model, RecurrentClassifier) and model.kind == "lstm" and not model.bidirectional
            and isinstance(model.pool, FinalState))


@register_model("lstm")
class LSTMClassifier(RecurrentClassifier):
    """LSTM over the rows of the image, last hidden state -> dropout -> linear (seed 000)."""


@register_model("stacked-lstm")
class StackedLSTMClassifier(RecurrentClassifier):
    """Two LSTM(50) layers with dropout 0.2 after each, then a linear layer (seed 002)."""

    defaults: ClassVar[dict] = {"hidden": 50, "layers": 2, "dropout": 0.2}


@register_model("gru")
class GRUClassifier(RecurrentClassifier):
    """GRU over the rows of the image, last hidden state -> dropout -> linear."""

    kind: ClassVar[str] = "gru"


@register_model("rnn")
class PlainRNNClassifier(RecurrentClassifier):
    """Plain tanh RNN over the rows: the baseline that shows what the LSTM's gates buy (seed 001)."""

    kind: ClassVar[str] = "rnn"


@register_model("bilstm")
class BidirectionalLSTMClassifier(RecurrentClassifier):
    """Bidirectional LSTM; both directions' final states are concatenated -> dropout -> linear."""

    bidirectional: ClassVar[bool] = True
