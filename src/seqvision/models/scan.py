"""How a recurrent model reads an image: the order in which pixels become time steps."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from seqvision.config import CHOICES, check_choice
from seqvision.errors import InputShapeError

PERMUTATION_SEED = 0


class ImageScan(nn.Module):
    """Turn a batch of images into a batch of sequences, checking the images are the size the model expects.

    `rows`: one step per row (28 steps of 28 pixels for MNIST), as in the seed programs.
    `columns`: one step per column, left to right.
    `pixels`: one step per pixel in reading order (784 steps of 1 value): sequential MNIST.
    `permuted-pixels`: the pixels in one fixed random order (seed 0, whatever the training seed), which
    removes the local structure a recurrent net could exploit: permuted sequential MNIST.

    Colour images (H, W, 3) are read the same way with each pixel's three values side by side: a row is then
    W*3 features, a column H*3, a pixel 3.
    """

    MODES = CHOICES["scan"]

    def __init__(self, mode: str, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        check_choice("scan", mode)
        self.mode = mode
        self.image_shape = tuple(image_shape)
        height, width, channels = *self.image_shape[:2], image_channels(self.image_shape)
        self.steps, self.features = {"rows": (height, width * channels),
                                     "columns": (width, height * channels)}.get(mode, (height * width, channels))
        if mode == "permuted-pixels":
            order = np.random.RandomState(PERMUTATION_SEED).permutation(height * width)
            self.register_buffer("order", torch.from_numpy(order), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # images: (B, H, W) or (B, H, W, C) -> sequences: (B, steps, features)
        check_image_batch(images, self.image_shape)
        if images.dim() == 3:
            images = images.unsqueeze(-1)  # (B, H, W, 1): one code path for greyscale and colour
        if self.mode == "rows":
            return images.flatten(2)
        if self.mode == "columns":
            return images.transpose(1, 2).flatten(2)
        # flatten keeps the batch size symbolic when the model is traced for export (len() would fix it)
        pixels = images.flatten(1, 2)
        if self.mode == "permuted-pixels":
            pixels = pixels[:, self.order]
        return pixels

    def extra_repr(self) -> str:
        return f"mode={self.mode}, steps={self.steps}, features={self.features}"


def image_channels(image_shape: tuple[int, ...]) -> int:
    """1 for greyscale images (H, W), C for colour images (H, W, C)."""
    return image_shape[2] if len(image_shape) == 3 else 1


def channels_first(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W) -> (B, 1, H, W) and (B, H, W, C) -> (B, C, H, W): the layout convolutions take."""
    return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)


def check_image_batch(images: torch.Tensor, image_shape: tuple[int, ...]) -> None:
    """Fail loudly on a batch in the wrong layout, which would otherwise train silently to chance accuracy."""
    expected = ("batch", *image_shape)
    if images.dim() != len(expected) or tuple(images.shape[1:]) != tuple(image_shape):
        if len(image_shape) == 3:
            built, layout = f"{image_shape[0]}x{image_shape[1]} colour images", "(batch, height, width, channels)"
        else:
            built, layout = f"{image_shape[0]}x{image_shape[1]} images", "(batch, height, width)"
        raise InputShapeError(
            f"expected a batch of images shaped {expected}, got {tuple(images.shape)}. "
            f"The model was built for {built}; pass {layout} tensors of that size, or train a model for your "
            "image size."
        )
