"""How a recurrent model sums up its sequence of outputs into one vector for the classifier."""

from __future__ import annotations

import torch
from torch import nn

from seqvision.config import check_choice


class FinalState(nn.Module):
    """The final hidden state of each direction: the last step going forward, the first step going backward."""

    def __init__(self, hidden: int, bidirectional: bool) -> None:
        super().__init__()
        self.hidden, self.bidirectional = hidden, bidirectional

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        # outputs: (B, T, directions * H) -> (B, directions * H)
        if not self.bidirectional:
            return outputs[:, -1]
        return torch.cat([outputs[:, -1, :self.hidden], outputs[:, 0, self.hidden:]], dim=1)


class AttentionPooling(nn.Module):
    """A learned weighted mean over all time steps: score_t = v . tanh(W h_t), weights = softmax over t."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.project = nn.Linear(width, width)
        self.score = nn.Linear(width, 1, bias=False)

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        # outputs: (B, T, W) -> weights (B, T, 1) -> (B, W)
        weights = torch.softmax(self.score(torch.tanh(self.project(outputs))), dim=1)
        return (weights * outputs).sum(dim=1)


def sequence_pooling(mode: str, hidden: int, bidirectional: bool) -> nn.Module:
    check_choice("pooling", mode)
    if mode == "last":
        return FinalState(hidden, bidirectional)
    return AttentionPooling(hidden * (2 if bidirectional else 1))
