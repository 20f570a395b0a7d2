"""A GRU whose training pass on the CPU has its gradient written out by hand; `nn.GRU` in every other case.

On the CPU `nn.LSTM` trains through oneDNN's fused RNN primitive, which has no GRU: `nn.GRU` runs ATen's
per-step loop, autograd records and replays every small operation of every step, and the backward pass makes
two matrix products per step. `GRUSequence` writes the backward pass out (the plan of `LSTMSequence` in
models/cells.py), and keeps the memory traffic low, which on this machine costs more than the arithmetic:
copying the whole-sequence buffers that a first version used for the input projection and the weight
gradients made it no faster than `nn.GRU`; accumulating them step by step made it about 20% faster
(benchmarks/gru_speed.py measures both beside the LSTM). In float32 the two loops run compiled
(models/fused.py), with the Python loops below as the fallback and the reference.

`GRU` is an `nn.GRU` (same parameters, same names, same state dict) that takes that path only where it
applies: a pass that records gradients, on the CPU, in float32 or float64, from a zero state. Inference in
float32 on the CPU runs a compiled loop of its own (the forward loop without what the backward pass needs).
Under bfloat16 autocast the layer runs the compiled loops, which are faster than `nn.GRU`'s bfloat16 steps: in
float32, except the matrix products (the input projection, h W_hh forward and its gradient backward, the weight
gradients), which take bfloat16 operands and accumulate in float32 where the CPU computes them natively (AMX or
AVX-512 BF16) and the hidden size is a multiple of 64; the Python loops round the same operands, as the reference.
Exporters (tracing, compiling), packed sequences, other devices, autocast without the compiled loops, and inference
without them get `nn.GRU`'s own forward, with the same weights.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqvision.models.fused import fused_kernels


class GRUSequence(torch.autograd.Function):
    """One GRU direction over a whole sequence from zero state, with `nn.GRU`'s equations: for gates r, z, n,

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr),  z = sigmoid(x W_iz + b_iz + h W_hz + b_hz),
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),  h' = (1 - z) * n + z * h.

    What a step makes and uses at once stays in small tensors that remain in the cache: the input projection is
    made step by step, the backward factors are stored while the step's gates are at hand, and the weight
    gradients are accumulated step by step. Saved buffers are time-major, (T, B, ...)."""

    @staticmethod
    def forward(ctx: Any, sequences: torch.Tensor, weight_ih: torch.Tensor, bias_ih: torch.Tensor,
                weight_hh: torch.Tensor, bias_hh: torch.Tensor, bf16_products: bool = False) -> torch.Tensor:
        # sequences (T, B, F), weight_ih (3H, F), bias_ih (3H), weight_hh (3H, H), bias_hh (3H) -> outputs (T, B, H)
        # bf16_products: every matrix product (the input projection, the recurrent products h W_hh and their
        # gradients, both weight gradients) from bfloat16 operands, accumulated in float32; everything else stays
        # float32.
        steps, batch, _ = sequences.shape
        size = weight_hh.shape[1]
        # The input side in (n, r, z) order lets the backward pass use one buffer for both sides' gradients.
        weight_in, bias_in = candidate_first(weight_ih), candidate_first(bias_ih)
        ctx.kernels = fused_kernels() if sequences.dtype == torch.float32 else None
        ctx.bf16_products = bf16_products
        if ctx.kernels is not None:
            sequences = sequences.contiguous()
            outputs, *factors, outputs_bf16 = ctx.kernels.gru_forward(sequences, weight_in, bias_in,
                                                                      weight_hh.contiguous(), bias_hh.contiguous(),
                                                                      bf16_products)
            ctx.save_for_backward(sequences, weight_in, weight_hh, *factors, outputs, outputs_bf16)
            return outputs
        reset_update = sequences.new_empty(steps, batch, 2 * size)
        # d h' / d (n's pre-activation), d h' / d (z's), and d (n's pre-activation) / d (r's)
        to_candidate, to_update, to_reset = (sequences.new_empty(steps, batch, size) for _ in range(3))
        outputs = sequences.new_empty(steps, batch, size)
        hidden = sequences.new_zeros(batch, size)
        ones = sequences.new_ones(batch, size)
        product_weight, product_inputs, product_weight_in = (product_operand(values, bf16_products)
                                                             for values in (weight_hh, sequences, weight_in))
        for step in range(steps):
            from_input = torch.addmm(bias_in, product_inputs[step], product_weight_in.t())  # (B, 3H): n, r, z
            from_hidden = torch.addmm(bias_hh, product_operand(hidden, bf16_products), product_weight.t())  # r, z, n
            gates = torch.sigmoid(from_input[:, size:].add_(from_hidden[:, :2 * size]), out=reset_update[step])
            reset, update = gates[:, :size], gates[:, size:]
            from_hidden_n = from_hidden[:, 2 * size:]
            candidate = torch.addcmul(from_input[:, :size], reset, from_hidden_n).tanh_()
            difference = hidden - candidate
            hidden = torch.addcmul(candidate, update, difference, out=outputs[step])  # n + z (h - n)
            keep = ones - update
            torch.mul(keep, torch.addcmul(ones, candidate, candidate, value=-1), out=to_candidate[step])
            torch.mul(difference, update * keep, out=to_update[step])
            torch.mul(from_hidden_n, reset * (ones - reset), out=to_reset[step])
        ctx.save_for_backward(sequences, weight_in, weight_hh, reset_update, to_candidate, to_update, to_reset, outputs)
        return outputs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_outputs: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # grad_outputs (T, B, H) -> gradients of sequences (T, B, F) (if needed), weight_ih, bias_ih, weight_hh, bias_hh
        # The compiled forward also saved its outputs in bf16 (an empty tensor without bf16 products).
        sequences, weight_in, weight_hh, reset_update, to_candidate, to_update, to_reset, outputs, *compiled_only = (
            ctx.saved_tensors)
        steps, batch, size = to_candidate.shape
        if ctx.kernels is not None:
            grad_sequences, grad_weight_in, grad_bias, grad_weight_hh = ctx.kernels.gru_backward(
                grad_outputs.contiguous(), sequences, weight_in, weight_hh.contiguous(), reset_update, to_candidate,
                to_update, to_reset, outputs, *compiled_only, ctx.needs_input_grad[0], ctx.bf16_products)
            return (grad_sequences if ctx.needs_input_grad[0] else None, gate_order_restored(grad_weight_in),
                    gate_order_restored(grad_bias[:3 * size]), grad_weight_hh, grad_bias[size:], None)
        # One step's gradients of the pre-activations, (B, 4H): n's before and after the product with r sit either
        # side of r's and z's, so [:, :3H] is the input side's (n, r, z) and [:, H:] the hidden side's (r, z, n).
        grads = grad_outputs.new_empty(batch, 4 * size)
        from_input, from_hidden = grads[:, :3 * size], grads[:, size:]
        grad_n, grad_r, grad_z, grad_hidden_n = grads.split(size, dim=1)
        grad_weight_in, grad_weight_hh = torch.zeros_like(weight_in), torch.zeros_like(weight_hh)
        grad_sums = torch.zeros_like(grads)
        grad_sequences = torch.empty_like(sequences) if ctx.needs_input_grad[0] else None
        grad_hidden = grad_outputs[steps - 1]
        product_weight, product_inputs, product_outputs = (product_operand(values, ctx.bf16_products)
                                                           for values in (weight_hh, sequences, outputs))
        for step in range(steps - 1, -1, -1):
            reset, update = reset_update[step, :, :size], reset_update[step, :, size:]
            torch.mul(grad_hidden, to_candidate[step], out=grad_n)
            torch.mul(grad_hidden, to_update[step], out=grad_z)
            torch.mul(grad_n, to_reset[step], out=grad_r)
            torch.mul(grad_n, reset, out=grad_hidden_n)
            grad_weight_in.addmm_(product_operand(from_input, ctx.bf16_products).t(), product_inputs[step])
            grad_sums.add_(grads)
            if grad_sequences is not None:
                torch.mm(from_input, weight_in, out=grad_sequences[step])
            if step > 0:  # the zero initial state adds nothing to weight_hh's gradient and needs none of its own
                hidden_side = product_operand(from_hidden, ctx.bf16_products)
                grad_weight_hh.addmm_(hidden_side.t(), product_outputs[step - 1])
                grad_hidden = torch.addmm(torch.addcmul(grad_outputs[step - 1], grad_hidden, update), hidden_side,
                                          product_weight)
        grad_bias = grad_sums.sum(dim=0)
        return (grad_sequences, gate_order_restored(grad_weight_in), gate_order_restored(grad_bias[:3 * size]),
                grad_weight_hh, grad_bias[size:], None)


def product_operand(values: torch.Tensor, bf16_products: bool) -> torch.Tensor:
    """`values` as a matrix product of the Python loops takes them: under bf16 products rounded to bfloat16 and
    back, the operands of the compiled loops' bf16 products, for the Python loops that are their reference."""
    return values.bfloat16().to(values.dtype) if bf16_products else values


def candidate_first(rows: torch.Tensor) -> torch.Tensor:
    """nn.GRU's (r, z, n) rows of an input weight or bias reordered to (n, r, z)."""
    size = rows.shape[0] // 3
    return torch.cat([rows[2 * size:], rows[:2 * size]])


def gate_order_restored(rows: torch.Tensor) -> torch.Tensor:
    """The inverse of `candidate_first`: (n, r, z) rows back to nn.GRU's (r, z, n)."""
    size = rows.shape[0] // 3
    return torch.cat([rows[size:], rows[:size]])


class GRU(nn.GRU):
    """`nn.GRU` with the hand-written training pass of `GRUSequence` where it applies (see the module docstring);
    takes and returns what `nn.GRU` does. One difference: that pass keeps its outputs for the backward pass, so
    changing them in place before it raises autograd's error, where `nn.GRU` allows it."""

    runs_compiled_loops = True  # training and inference on the CPU in float32: models/fused.py

    def forward(self, input: Any, hx: torch.Tensor | None = None) -> tuple[Any, torch.Tensor]:
        applies = self._own_loops_apply(input, hx)
        if applies and torch.is_autocast_enabled("cpu"):
            kernels = fused_kernels()
            if kernels is None:
                return super().forward(input, hx)
            # The compiled loops take about half the time of nn.GRU's bfloat16 steps (ATen's loop of small ops:
            # oneDNN's fused RNN, which makes the LSTM's bf16 steps fast, has no GRU in PyTorch), so under autocast
            # the layer runs them, in float32 but for the matrix products in bf16 where the CPU computes them
            # natively, and autocast applies to the layers around it.
            bf16_products = (torch.get_autocast_dtype("cpu") == torch.bfloat16 and input.dtype == torch.float32
                             and input.numel() > 0 and kernels.bf16_products_available(self.hidden_size))
            with torch.autocast("cpu", enabled=False):
                return self._forward(input, hx, bf16_products)
        return self._forward(input, hx, bf16_products=False)

    def _forward(self, input: Any, hx: torch.Tensor | None, bf16_products: bool) -> tuple[Any, torch.Tensor]:
        applies, training = self._own_loops_apply(input, hx), torch.is_grad_enabled()
        inference_kernels = fused_kernels() if applies and not training and input.dtype == torch.float32 else None
        if not applies or (not training and inference_kernels is None):
            return super().forward(input, hx)
        # input (B, T, F), or (T, B, F) if not batch-first -> outputs (B, T, dirs*H) or (T, B, dirs*H),
        # h_n (layers*dirs, B, H)
        layer_input = input.transpose(0, 1) if self.batch_first else input  # time-major, as GRUSequence reads it
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
            outputs = self._direction(layer_input, layer, "", inference_kernels, bf16_products)
            finals.append(outputs[-1])
            if self.bidirectional:
                # The reverse direction reads the sequence backwards: its final state is its output at step 0.
                reverse = self._direction(layer_input.flip(0), layer, "_reverse", inference_kernels,
                                          bf16_products).flip(0)
                finals.append(reverse[0])
                outputs = torch.cat([outputs, reverse], dim=2)
            layer_input = outputs
        return (layer_input.transpose(0, 1) if self.batch_first else layer_input), torch.stack(finals)

    def _direction(self, sequences: torch.Tensor, layer: int, suffix: str, inference_kernels: ModuleType | None,
                   bf16_products: bool) -> torch.Tensor:
        # sequences (T, B, F) -> outputs (T, B, H): the training pass, or the compiled inference loop when given
        weight_ih, bias_ih, weight_hh, bias_hh = (getattr(self, f"{name}_l{layer}{suffix}")
                                                  for name in ("weight_ih", "bias_ih", "weight_hh", "bias_hh"))
        if inference_kernels is None:
            return GRUSequence.apply(sequences, weight_ih, bias_ih, weight_hh, bias_hh, bf16_products)
        return inference_kernels.gru_inference(sequences.contiguous(), candidate_first(weight_ih),
                                               candidate_first(bias_ih), weight_hh.contiguous(), bias_hh.contiguous(),
                                               bf16_products)

    def _own_loops_apply(self, input: Any, hx: torch.Tensor | None) -> bool:
        # Under a tracer or compiler (which cannot look inside a Python autograd function or a compiled library),
        # nn.GRU's own forward is exportable.
        return (hx is None and self.bias
                and isinstance(input, torch.Tensor) and input.dim() == 3
                and input.device.type == "cpu" and input.dtype in (torch.float32, torch.float64)
                and not torch.jit.is_scripting()
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling())
