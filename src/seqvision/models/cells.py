"""An LSTM written out gate by gate, with `torch.nn.LSTM`'s parameter layout, so it can show what the gates do.

The fused `nn.LSTM` stays the fast path for training. This module is for what the fused kernel cannot do:
return every gate activation and cell state (the data behind gate visualisations), and use another
activation for the cell input and output (Keras's `LSTM(activation='sigmoid')`, used by seed 000).
`ExplicitLSTM.like(lstm)` copies an `nn.LSTM`'s weights and gives the same outputs and gradients.

Two paths compute the same recurrence. `LSTMCell` is the readable one, used for traces. Training runs
`LSTMSequence`, an autograd function with a hand-written backward pass: autograd through the cell records
about fifteen small operations per step and replays them one by one, which made the explicit LSTM 3-4x
slower than `nn.LSTM`; the hand-written pass keeps every per-step tensor in three preallocated buffers and
computes the weight gradient in one matrix product after the loop (docs/benchmarks.md has the figures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqvision.config import check_choice
from seqvision.errors import ConfigError

ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid}  # keyed by the choices of --cell-activation


def activation_slope(activated: torch.Tensor, activation: str) -> torch.Tensor:
    """The derivative of the activation, from its output y: 1 - y^2 for tanh, y (1 - y) for sigmoid."""
    return 1 - activated * activated if activation == "tanh" else activated * (1 - activated)


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


class LSTMSequence(torch.autograd.Function):
    """One LSTM layer over a whole sequence from zero state, with the gradient written out by hand.

    Buffers are time-major, (T, B, ...), so each step's slice is contiguous."""

    @staticmethod
    def forward(ctx: Any, projected: torch.Tensor, weight_hh: torch.Tensor,
                activation: str) -> tuple[torch.Tensor, torch.Tensor]:
        # projected: (B, T, 4H), the input through weight_ih plus both biases; weight_hh: (4H, H)
        # -> outputs (B, T, H) and the final cell state (B, H)
        batch, steps, _ = projected.shape
        size = weight_hh.shape[1]
        projected = projected.transpose(0, 1)
        gates = projected.new_empty(steps, batch, 4 * size)
        cells = projected.new_empty(steps, batch, size)
        hiddens = projected.new_empty(steps, batch, size)
        hidden = cell = projected.new_zeros(batch, size)
        recurrent, squash = weight_hh.t(), ACTIVATIONS[activation]
        for step in range(steps):
            pre_activation = torch.addmm(projected[step], hidden, recurrent)
            step_gates = torch.sigmoid(pre_activation, out=gates[step])
            i, f, g, o = step_gates.chunk(4, dim=1)
            if activation != "sigmoid":
                squash(pre_activation[:, 2 * size:3 * size], out=g)
            cell = torch.addcmul(f * cell, i, g, out=cells[step])
            hidden = torch.mul(o, squash(cell), out=hiddens[step])
        ctx.activation = activation
        ctx.save_for_backward(weight_hh, gates, cells, hiddens)
        return hiddens.transpose(0, 1).contiguous(), cell.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_outputs: torch.Tensor, grad_cell: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, None]:
        # grad_outputs (B, T, H), grad_cell (B, H) -> gradients of projected (B, T, 4H) and weight_hh (4H, H)
        weight_hh, gates, cells, hiddens = ctx.saved_tensors
        steps, _, size = cells.shape
        activation = ctx.activation
        squashed_cells = ACTIVATIONS[activation](cells)
        i, f, g, o = gates.chunk(4, dim=2)
        # Every factor that does not depend on the running gradient, for all steps at once.
        gate_slopes = gates * (1 - gates)
        gate_slopes[..., 2 * size:3 * size] = activation_slope(g, activation)
        output_to_cell = o * activation_slope(squashed_cells, activation)
        grad_gates = torch.empty_like(gates)
        grad_outputs = grad_outputs.transpose(0, 1)
        grad_hidden_next = torch.zeros_like(cells[0])
        grad_cell = torch.zeros_like(cells[0]) if grad_cell is None else grad_cell
        for step in range(steps - 1, -1, -1):
            grad_hidden = grad_outputs[step] + grad_hidden_next
            grad_i, grad_f, grad_g, grad_o = grad_gates[step].chunk(4, dim=1)
            torch.mul(grad_hidden, squashed_cells[step], out=grad_o)
            grad_cell = torch.addcmul(grad_cell, grad_hidden, output_to_cell[step])
            torch.mul(grad_cell, g[step], out=grad_i)
            torch.mul(grad_cell, i[step], out=grad_g)
            if step > 0:
                torch.mul(grad_cell, cells[step - 1], out=grad_f)
            else:
                grad_f.zero_()
            grad_cell = grad_cell * f[step]
            grad_gates[step].mul_(gate_slopes[step])
            if step > 0:
                grad_hidden_next = grad_gates[step] @ weight_hh
        previous_hiddens = torch.cat([torch.zeros_like(hiddens[:1]), hiddens[:-1]])
        grad_weight = grad_gates.reshape(-1, 4 * size).t() @ previous_hiddens.reshape(-1, size)
        return grad_gates.transpose(0, 1), grad_weight, None


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
        if not torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
            # Without a backward pass to save, the readable cells are as fast, and exporters can trace them,
            # where they cannot look inside a Python autograd function.
            outputs, finals, _ = self._run_cells(sequences)
            return outputs, finals
        layer_input, final_h, final_c = sequences, [], []
        for index, cell in enumerate(self.cells):
            if index > 0:
                layer_input = self.between_layers(layer_input)
            # One matrix product for the input side of every step; only the recurrent side is sequential.
            projected = layer_input @ cell.weight_ih.T + (cell.bias_ih + cell.bias_hh)
            layer_input, last_cell = LSTMSequence.apply(projected, cell.weight_hh, cell.activation)
            final_h.append(layer_input[:, -1])
            final_c.append(last_cell)
        return layer_input, (torch.stack(final_h), torch.stack(final_c))

    def trace(self, sequences: torch.Tensor) -> LSTMTrace:
        """Run the sequences step by step through the readable cells; the last layer's gates and states."""
        return self._run_cells(sequences)[2]

    def _run_cells(self, sequences: torch.Tensor
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], LSTMTrace]:
        batch, steps, _ = sequences.shape
        layer_input, final_h, final_c = sequences, [], []
        for index, cell in enumerate(self.cells):
            if index > 0:
                layer_input = self.between_layers(layer_input)
            projected = layer_input @ cell.weight_ih.T + cell.bias_ih
            hidden = layer_input.new_zeros(batch, self.hidden_size)
            state = (hidden, hidden)
            outputs, gates, cells = [], [], []
            for step in range(steps):
                h, c, step_gates = cell(projected[:, step], state)
                state = (h, c)
                outputs.append(h)
                gates.append(step_gates)
                cells.append(c)
            layer_input = torch.stack(outputs, dim=1)
            final_h.append(state[0])
            final_c.append(state[1])
        i, f, g, o = (torch.stack(parts, dim=1) for parts in zip(*gates, strict=True))
        trace = LSTMTrace(i, f, g, o, torch.stack(cells, dim=1), layer_input)
        return layer_input, (torch.stack(final_h), torch.stack(final_c)), trace

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
