"""The CNN's pool-then-ReLU order against seed 002's ReLU-then-pool: the same numbers, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqvision.config import TrainConfig
from seqvision.models import build_model


def seed_002_order(features: nn.Sequential) -> nn.Sequential:
    """The same layers in the order seed 002 writes them: conv, ReLU, pool, conv, ReLU, pool."""
    conv1, pool1, relu1, conv2, pool2, relu2 = features
    return nn.Sequential(conv1, relu1, pool1, conv2, relu2, pool2)


@pytest.mark.parametrize("shape", [(28, 28), (27, 23, 3)], ids=["mnist", "odd-sized colour"])
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16 autocast"])
def test_pooling_before_relu_gives_seed_002s_values_and_gradients(shape, bf16):
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="cnn"), shape, 10)
    # Shifted down so that many pooling windows hold no positive value, the case where the orders could differ.
    images = torch.randn(8, *shape) - 0.5
    gradients = []
    for features in (model.features, seed_002_order(model.features)):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = features(images.unsqueeze(1) if len(shape) == 2 else images.permute(0, 3, 1, 2))
        assert (out == 0).float().mean() > 0.1
        (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        gradients.append((out, [p.grad.clone() for p in features.parameters()]))
    (out, grads), (reference_out, reference_grads) = gradients
    assert torch.equal(out, reference_out)
    assert all(torch.equal(g, r) for g, r in zip(grads, reference_grads, strict=True))
