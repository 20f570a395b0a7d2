"""An LSTM written out gate by gate, with `torch.nn.LSTM`'s parameter layout, so it can show what the gates do.

The fused `nn.LSTM` stays the fast path for training. This module is for what the fused kernel cannot do:
return every gate activation and cell state (the data behind gate visualisations), and use another
activation for the cell input and output (Keras's `LSTM(activation='sigmoid')`, used by seed 000).
`ExplicitLSTM.like(lstm)` copies an `nn.LSTM`'s weights and gives the same outputs and gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from seqvision.config import check_choice
from seqvision.errors import ConfigError

ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}  # keyed by the choices of --cell-activation


@dataclass
class LSTMTrace:
    """Every step of the last layer, each (batch, steps, hidden): the gates after their sigmoid, the candidate
    after its activation, the cell state and the hidden state."""

    input_gate: torch.Tensor
    forget_gate: torch.Tensor
    candidate: torch.Tensor
    output_gate: torch.Tensor
    cell: torch.Tensor
    hidden: torch.Tensor


class LSTMCell(nn.Module):
    """One step of an LSTM. Parameters as in `nn.LSTM`: rows of `weight_ih`/`weight_hh` are the
    input, forget, candidate and output gates, in that order."""

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh") -> None:
        super().__init__()
        check_choice("cell_activation", activation)
        self.input_size, self.hidden_size, self.activation = input_size, hidden_size, activation
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # The same uniform(-1/sqrt(H), 1/sqrt(H)) that nn.LSTM starts from.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def forward(self, projected_input: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        # projected_input: (B, 4H), the input already through weight_ih and bias_ih (done for all steps at once)
        # state: h, c each (B, H) -> new h, new c, and the gates (i, f, g, o) each (B, H)
        hidden, cell = state
        pre_activation = projected_input + hidden @ self.weight_hh.T + self.bias_hh
        i, f, g, o = pre_activation.chunk(4, dim=1)
        squash = ACTIVATIONS[self.activation]
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), squash(g), torch.sigmoid(o)
        cell = f * cell + i * g
        hidden = o * squash(cell)
        return hidden, cell, (i, f, g, o)


class ExplicitLSTM(nn.Module):
    """A batch-first, unidirectional, stacked LSTM made of `LSTMCell`s (layer k is `cells[k]`)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 activation: str = "tanh") -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cells = nn.ModuleList(LSTMCell(input_size if layer == 0 else hidden_size, hidden_size, activation)
                                   for layer in range(num_layers))
        self.between_layers = nn.Dropout(dropout)

    @classmethod
    def like(cls, lstm: nn.LSTM, activation: str = "tanh") -> ExplicitLSTM:
        """The explicit twin of a fused, batch-first `nn.LSTM`, with its weights."""
        if lstm.bidirectional or not lstm.batch_first or lstm.proj_size:
            raise ConfigError("only batch-first, unidirectional LSTMs without projections have an explicit twin.")
        twin = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.dropout, activation)
        twin.load_state_dict({f"cells.{layer}.{name}": value.detach().clone()
                              for layer in range(lstm.num_layers)
                              for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                              for value in [getattr(lstm, f"{name}_l{layer}")]})
        return twin.to(lstm.weight_ih_l0.device)

    def forward(self, sequences: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        # sequences: (B, T, F) -> outputs (B, T, H), (h_n, c_n) each (layers, B, H), as nn.LSTM returns them
        outputs, finals, _ = self._run(sequences, trace=False)
        return outputs, finals

    def trace(self, sequences: torch.Tensor) -> LSTMTrace:
        """Run the sequences and return the last layer's gates and states at every step."""
        return self._run(sequences, trace=True)[2]

    def _run(self, sequences: torch.Tensor, trace: bool
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], LSTMTrace | None]:
        batch, steps, _ = sequences.shape
        layer_input, final_h, final_c, recorded = sequences, [], [], None
        for index, cell in enumerate(self.cells):
            if index > 0:
                layer_input = self.between_layers(layer_input)
            # One matrix product for the input side of every step; only the recurrent side is sequential.
            projected = layer_input @ cell.weight_ih.T + cell.bias_ih
            hidden = layer_input.new_zeros(batch, self.hidden_size)
            state = (hidden, hidden)
            outputs, gates, cells = [], [], []
            for step in range(steps):
                h, c, step_gates = cell(projected[:, step], state)
                state = (h, c)
                outputs.append(h)
                if trace:
                    gates.append(step_gates)
                    cells.append(c)
            layer_input = torch.stack(outputs, dim=1)
            final_h.append(state[0])
            final_c.append(state[1])
            if trace and index == len(self.cells) - 1:
                i, f, g, o = (torch.stack(parts, dim=1) for parts in zip(*gates, strict=True))
                recorded = LSTMTrace(i, f, g, o, torch.stack(cells, dim=1), layer_input)
        return layer_input, (torch.stack(final_h), torch.stack(final_c)), recorded

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
