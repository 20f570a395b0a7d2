"""A Keras-style model summary: layers, output shapes and parameter counts, from torchinfo."""

from __future__ import annotations

import re

from torch import nn


def model_summary(model: nn.Module, image_shape: tuple[int, ...]) -> str:
    from torchinfo import summary
    from torchinfo.enums import Units

    stats = summary(model, input_size=(1, *image_shape), col_names=("output_size", "num_params"),
                    depth=3, device="cpu", verbose=0, mode="eval")
    # torchinfo 1.8 formats its unit enum as "Units.MEGABYTES" under Python 3.11+; show the unit itself.
    return re.sub(r"Units\.(\w+)", lambda match: Units[match.group(1)].value, str(stats)) + "\n"
