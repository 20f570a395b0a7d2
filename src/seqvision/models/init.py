"""Weight initialisation schemes: PyTorch's own defaults, or the ones Keras uses.

Keras code ported to PyTorch often trains differently because the starting weights differ. Keras starts
recurrent layers with Glorot-uniform input weights, orthogonal recurrent weights, zero biases and a
forget-gate bias of 1 (`unit_forget_bias`), and dense and convolution layers with Glorot-uniform weights
and zero biases. PyTorch draws everything from uniform(-1/sqrt(fan), 1/sqrt(fan)).
"""

from __future__ import annotations

import torch
from torch import nn

from seqvision.config import check_choice
from seqvision.models.cells import LSTMCell

RECURRENT_LAYERS = (nn.LSTM, nn.GRU, nn.RNN)


def initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise `model` in place; "torch" keeps the weights the layers were built with."""
    check_choice("init", scheme)
    if scheme == "torch":
        return
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RECURRENT_LAYERS):
            lstm = isinstance(module, nn.LSTM)
            for name, weight in module.named_parameters():
                _keras_recurrent(name.split("_l")[0], weight, forget_bias=lstm)
        elif isinstance(module, LSTMCell):
            for name, weight in module.named_parameters():
                _keras_recurrent(name, weight, forget_bias=True)


def _keras_recurrent(kind: str, weight: nn.Parameter, forget_bias: bool) -> None:
    # Keras initialises its (input, 4H) kernel as one matrix; xavier on the (4H, input) transpose has the
    # same bound, and orthogonal rows there are orthogonal columns here.
    if kind == "weight_ih":
        nn.init.xavier_uniform_(weight)
    elif kind == "weight_hh":
        nn.init.orthogonal_(weight)
    else:
        nn.init.zeros_(weight)
        if forget_bias and kind == "bias_ih":
            # Gate order is input, forget, candidate, output; Keras has one bias, PyTorch two (ih and hh).
            hidden = weight.shape[0] // 4
            with torch.no_grad():
                weight[hidden:2 * hidden] = 1.0
