"""An LSTM written out gate by gate, with `torch.nn.LSTM`'s parameter layout, so it can show what the gates do.

The fused `nn.LSTM` stays the fast path for training. This module is for what the fused kernel cannot do:
return every gate activation and cell state (the data behind gate visualisations), and use another
activation for the cell input and output (Keras's `LSTM(activation='sigmoid')`, used by seed 000).
`ExplicitLSTM.like(lstm)` copies an `nn.LSTM`'s weights and gives the same outputs and gradients.

Two paths compute the same recurrence. `LSTMCell` is the readable one, used for traces and exporters, and for
inference where the compiled loops are missing. Training runs `LSTMSequence`, an autograd function with a
hand-written backward pass: autograd through the cell records about fifteen small operations per step and
replays them one by one, which made the explicit LSTM 3-4x slower than `nn.LSTM`. The hand-written pass works
in place in preallocated buffers laid out so that each gate of a step is one contiguous block, computes in the
forward step the factors its gradient will need, and takes autocast's dtype for its matrix products only
(docs/benchmarks.md has the figures; benchmarks/explicit_cell.py measures them). In float32 on the CPU its two
loops run compiled (models/fused.py), with the Python loops below as the fallback and the reference, and so
does inference, without the factors; under autocast on the CPU the compiled loops run too, in float32, being
faster than the Python loops' bfloat16 products.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqvision.config import check_choice
from seqvision.errors import ConfigError
from seqvision.models.fused import fused_kernels

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

    The matrix products run in `dtype` (bfloat16 under autocast); the cell state, the elementwise work and the
    parameters' gradients stay in the parameters' dtype, at least float32. Inside, every per-step tensor lives
    in a buffer laid out (T, features, B): a step's slice is contiguous and so is each of its four gates, and
    small elementwise operations on contiguous blocks run much faster than on the strided gate columns of
    `nn.LSTM`'s (B, 4H) rows. The input projection is done here too, straight into that layout, as permuting a
    projection done outside would copy the largest tensor of the pass twice, once each way."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor,
                weight_hh: torch.Tensor, activation: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # inputs (B, T, F); weight_ih (4H, F), bias (4H) (both biases summed), weight_hh (4H, H)
        # -> outputs (B, T, H) in `dtype` and the final cell state (B, H), views of the saved buffers
        original_dtype = inputs.dtype
        with torch.autocast(inputs.device.type, enabled=False):  # the dtypes here are chosen, not cast
            inputs, weight_ih, weight_hh = (tensor.to(dtype) for tensor in (inputs, weight_ih, weight_hh))
            projected = project_steps(inputs, weight_ih, bias)
            kernels = fused_kernels() if dtype == torch.float32 and inputs.device.type == "cpu" else None
            if kernels is not None:
                hiddens, factors, last_cell = kernels.lstm_forward(projected, weight_hh.contiguous(),
                                                                     activation == "sigmoid")
            else:
                hiddens, factors, last_cell = lstm_forward_loop(projected, weight_hh, activation)
        ctx.input_dtype, ctx.kernels = original_dtype, kernels
        ctx.save_for_backward(inputs, weight_ih, weight_hh, projected, hiddens, factors)
        return hiddens.permute(2, 0, 1), last_cell.t()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_outputs: torch.Tensor, grad_cell: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor, None, None]:
        # grad_outputs (B, T, H), grad_cell (B, H) -> gradients of inputs (B, T, F), weight_ih (4H, F),
        # bias (4H) and weight_hh (4H, H), in the dtypes those came in
        inputs, weight_ih, weight_hh, gates, hiddens, factors = ctx.saved_tensors
        precise = factors.dtype
        with torch.autocast(grad_outputs.device.type, enabled=False):
            if ctx.kernels is not None:
                grad_cell = (factors.new_zeros(factors.shape[2:]) if grad_cell is None  # the kernel overwrites it
                             else grad_cell.t().clone(memory_format=torch.contiguous_format))
                grad_gates, grad_weight_hh = ctx.kernels.lstm_backward(grad_outputs.permute(1, 2, 0).contiguous(),
                                                                       grad_cell, weight_hh, gates, hiddens, factors)
            else:
                grad_gates, grad_weight_hh = lstm_backward_loop(grad_outputs, grad_cell, weight_hh, gates, hiddens,
                                                                factors)
            # grad_gates (T, 4H, B) is also the gradient of the projection
            grad_inputs = (torch.matmul(grad_gates.transpose(1, 2), weight_ih).transpose(0, 1).to(ctx.input_dtype)
                           if ctx.needs_input_grad[0] else None)
            grad_weight_ih = torch.matmul(grad_gates, inputs.transpose(0, 1)).sum(0, dtype=precise)
            grad_bias = grad_gates.sum((0, 2), dtype=precise)
        return grad_inputs, grad_weight_ih, grad_bias, grad_weight_hh, None, None


def project_steps(inputs: torch.Tensor, weight_ih: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Every step's input through weight_ih plus both biases, in the layout of the recurrence's buffers."""
    # inputs (B, T, F), weight_ih (4H, F) in the dtype of the products, bias (4H) -> (T, 4H, B) in the state dtype
    return torch.matmul(weight_ih, inputs.permute(1, 2, 0)).to(state_dtype(inputs.dtype)).add_(bias[:, None])


def lstm_forward_loop(projected: torch.Tensor, weight_hh: torch.Tensor, activation: str
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward recurrence of `LSTMSequence`, in place in `projected`, which ends holding every step's gates
    after their activations: every step's hidden state and the factors of its gradient (see
    `gradient_factors`), and the last cell state."""
    # projected (T, 4H, B) in the state dtype; weight_hh (4H, H) in the dtype of the products
    # -> hiddens (T, H, B) in the dtype of the products, factors (T, 5, H, B) and the last cell state (H, B)
    steps, _, batch = projected.shape
    size = weight_hh.shape[1]
    hiddens = weight_hh.new_empty(steps, size, batch)
    factors = projected.new_empty(steps, 5, size, batch)
    cell = previous_cell = projected.new_zeros(size, batch)
    squash = ACTIVATIONS[activation]
    for step in range(steps):
        step_gates = projected[step]
        if step > 0:  # the first step starts from a zero hidden state
            accumulate_product(step_gates, weight_hh, hiddens[step - 1])
        activate_gates(step_gates, activation)
        i, f, g, o = step_gates.chunk(4)
        cell = torch.mul(f, previous_cell).addcmul_(i, g)
        squashed_cell = squash(cell, out=factors[step, 3])
        torch.mul(o, squashed_cell, out=hiddens[step])
        gradient_factors(step_gates, previous_cell, factors[step], activation)
        previous_cell = cell
    return hiddens, factors, cell


def activate_gates(pre_activation: torch.Tensor, activation: str) -> None:
    """Apply the gates' activations in place: sigmoid to i, f, o and `activation` to the candidate g."""
    # pre_activation: (4H, B), gates i, f, g, o one above the other
    if activation == "sigmoid":
        pre_activation.sigmoid_()
        return
    size = pre_activation.shape[0] // 4
    i_and_f, g, o = pre_activation.tensor_split((2 * size, 3 * size))
    i_and_f.sigmoid_()
    ACTIVATIONS[activation](g, out=g)
    o.sigmoid_()


def gradient_factors(gates: torch.Tensor, previous_cell: torch.Tensor, factors: torch.Tensor, activation: str
                     ) -> None:
    """Fill one step's `factors` with what the backward recurrence needs from it: the input gate, forget gate
    and candidate pre-activations get dc times the first three, the output gate's pre-activation gets dh times
    the fourth, and the cell state dh times the fifth. Done in the forward step, while its tensors are still
    in the cache, rather than for all steps at once in the backward pass, which made twice the memory traffic.
    The fourth slot comes holding the squashed cell state."""
    # gates (4H, B) after their activations, previous_cell (H, B) -> factors (5, H, B)
    i, _, g, o = gates.chunk(4)
    slope_i, slope_f, slope_g, slope_o = torch.addcmul(gates, gates, gates, value=-1).chunk(4)  # sigmoid's
    if activation != "sigmoid":
        slope_g = activation_slope(g, activation)
    squashed_cell = factors[3]
    torch.mul(g, slope_i, out=factors[0])
    torch.mul(previous_cell, slope_f, out=factors[1])
    torch.mul(i, slope_g, out=factors[2])
    torch.mul(o, activation_slope(squashed_cell, activation), out=factors[4])
    squashed_cell.mul_(slope_o)


def lstm_backward_loop(grad_outputs: torch.Tensor, grad_final_cell: torch.Tensor | None, weight_hh: torch.Tensor,
                       gates: torch.Tensor, hiddens: torch.Tensor, factors: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward recurrence of `LSTMSequence`: the gradients of every step's gate pre-activations, in the
    dtype of the products, and of the recurrent weight, in the state dtype."""
    # grad_outputs (B, T, H), grad_final_cell (B, H) or None, the forward's buffers
    # -> grad_gates (T, 4H, B), grad_weight (4H, H)
    steps, _, size, batch = factors.shape
    precise, forget_gates = factors.dtype, gates[:, size:2 * size]
    grad_outputs = grad_outputs.permute(1, 2, 0).to(hiddens.dtype, memory_format=torch.contiguous_format)
    grad_gates = hiddens.new_empty(steps, 4 * size, batch)
    grad_weight = weight_hh.new_zeros(weight_hh.shape, dtype=precise)
    grad_cell = (factors.new_zeros(size, batch) if grad_final_cell is None
                 else grad_final_cell.t().to(precise, memory_format=torch.contiguous_format, copy=True))
    grad_hidden, recurrent = grad_outputs[steps - 1], weight_hh.t().contiguous()  # contiguous: faster products
    for step in range(steps - 1, -1, -1):
        step_grads, step_factors = grad_gates[step], factors[step]
        grad_hidden = grad_hidden.to(precise)
        torch.mul(grad_hidden, step_factors[3], out=step_grads[3 * size:])
        grad_cell.addcmul_(grad_hidden, step_factors[4])
        torch.mul(step_factors[:3], grad_cell, out=step_grads[:3 * size].view(3, size, batch))
        if step > 0:  # the first step saw a zero hidden state
            accumulate_product(grad_weight, step_grads, hiddens[step - 1].t())
            grad_cell.mul_(forget_gates[step])
            grad_hidden = torch.addmm(grad_outputs[step - 1], recurrent, step_grads)
    return grad_gates, grad_weight


def accumulate_product(total: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> None:
    """total += left @ right, with the sum kept in total's dtype when the product runs in a narrower one."""
    if left.dtype == total.dtype:
        total.addmm_(left, right)
    else:
        total.add_(left @ right)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the cell state and of the gradient's elementwise work: float32, or float64 for float64."""
    return torch.promote_types(dtype, torch.float32)


class ExplicitLSTM(nn.Module):
    """A batch-first, unidirectional, stacked LSTM made of `LSTMCell`s (layer k is `cells[k]`)."""

    runs_compiled_loops = True  # training and inference on the CPU in float32: models/fused.py

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
        device = sequences.device.type
        autocast = torch.is_autocast_enabled(device)
        training = torch.is_grad_enabled()
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if (autocast and not exporting and device == "cpu" and sequences.dtype == torch.float32
                and fused_kernels() is not None):
            # The compiled float32 loops took half the time of the bfloat16 products in the Python loops (a seed-000
            # training step, benchmarks/explicit_cell.py), so under autocast they run, and autocast applies to the
            # layers around this one.
            with torch.autocast(device, enabled=False):
                return self.forward(sequences)
        inference_kernels = None
        if not (training or exporting or autocast) and device == "cpu" and sequences.dtype == torch.float32:
            inference_kernels = fused_kernels()
        if exporting or (not training and inference_kernels is None):
            # Exporters trace the readable cells, where they cannot look inside a Python autograd function or a
            # compiled library; and without a backward pass to save, those cells are as fast as the Python loops.
            outputs, finals, _ = self._run_cells(sequences, keep_trace=False)
            return outputs, finals
        # Autocast leaves a custom autograd function alone, so its dtype is passed on: the products run in it.
        dtype = torch.get_autocast_dtype(device) if autocast else self.cells[0].weight_hh.dtype
        layer_input, final_h, final_c = sequences, [], []
        for index, cell in enumerate(self.cells):
            if index > 0:
                layer_input = self.between_layers(layer_input)
            bias = cell.bias_ih + cell.bias_hh
            if training:
                layer_input, last_cell = LSTMSequence.apply(layer_input, cell.weight_ih, bias, cell.weight_hh,
                                                            cell.activation, dtype)
            else:
                hiddens, last_cell = inference_kernels.lstm_inference(
                    project_steps(layer_input, cell.weight_ih, bias), cell.weight_hh.contiguous(),
                    cell.activation == "sigmoid")
                layer_input, last_cell = hiddens.permute(2, 0, 1), last_cell.t()
            final_h.append(layer_input[:, -1])
            final_c.append(last_cell)
        return layer_input, (torch.stack(final_h), torch.stack(final_c))

    def trace(self, sequences: torch.Tensor) -> LSTMTrace:
        """Run the sequences step by step through the readable cells; the last layer's gates and states."""
        return self._run_cells(sequences)[2]

    def _run_cells(self, sequences: torch.Tensor, keep_trace: bool = True
                   ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor], LSTMTrace | None]:
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
                if keep_trace:
                    # Only when asked: predicting a test set does not need every step's gates and cell states,
                    # five more (B, T, H) tensors a batch.
                    gates.append(step_gates)
                    cells.append(c)
            layer_input = torch.stack(outputs, dim=1)
            final_h.append(state[0])
            final_c.append(state[1])
        finals = torch.stack(final_h), torch.stack(final_c)
        if not keep_trace:
            return layer_input, finals, None
        i, f, g, o = (torch.stack(parts, dim=1) for parts in zip(*gates, strict=True))
        return layer_input, finals, LSTMTrace(i, f, g, o, torch.stack(cells, dim=1), layer_input)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
