"""A Keras-style model summary: layers, output shapes and parameter counts, from torchinfo."""

from __future__ import annotations

from torch import nn


def model_summary(model: nn.Module, image_shape: tuple[int, int]) -> str:
    from torchinfo import summary

    stats = summary(model, input_size=(1, *image_shape), col_names=("output_size", "num_params"),
                    depth=3, device="cpu", verbose=0, mode="eval")
    return str(stats) + "\n"
