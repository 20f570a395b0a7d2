"""Random rotation, scaling, elastic distortion and mirroring of training batches, in one resampling per batch.

Every image of a batch gets its own transform: a rotation by up to `rotate` degrees either way, a scale
factor in [1 - scale, 1 + scale], on request a left-right mirror (half of the images), and an elastic
distortion: Simard, Steinkraus and Platt's (2003) random displacement field, uniform in [-1, 1] per pixel
and coordinate, smoothed by a Gaussian of standard deviation `elastic_sigma` pixels and scaled by `elastic`
(alpha; their MNIST setting is alpha 34, sigma 4). All of it becomes one sampling grid per image and one
bilinear `grid_sample` over the batch; what the grid reaches outside the image is background (0).

The random parameters come from a generator seeded by (seed, epoch, batch number), separate from the
shuffle's and the shifts' streams: the same run sees the same augmented batches, a resumed epoch sees the
same ones again, and turning these transforms on leaves the shifts (`--augment-shift`) as they were.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from seqvision.config import TrainConfig
from seqvision.data.registry import dataset_names, get_dataset
from seqvision.errors import ConfigError

# Distinguishes this stream from any other seeded by the same (seed, epoch, batch).
AUGMENT_STREAM = 0x5EC0A6


@dataclass(frozen=True)
class Warp:
    """The drawn transform of each image of a batch: angles (B,) in degrees, counter-clockwise as displayed;
    scales (B,); flips (B,) bool, mirrored left to right; displacement (B, 2, H, W) in pixels (x, y), or None."""

    angles: torch.Tensor
    scales: torch.Tensor
    flips: torch.Tensor
    displacement: torch.Tensor | None = None

    def select(self, part: slice) -> Warp:
        """The transforms of the images in `part` of the batch (a process's share of a global batch)."""
        return Warp(self.angles[part], self.scales[part], self.flips[part],
                    None if self.displacement is None else self.displacement[part])


@dataclass(frozen=True)
class Augmentation:
    """How far training images are randomly rotated (degrees), scaled (fraction), elastically distorted
    (alpha and sigma in pixels) and whether half of them are mirrored."""

    rotate: float = 0.0
    scale: float = 0.0
    elastic: float = 0.0
    elastic_sigma: float = 4.0
    flip: bool = False

    @classmethod
    def from_config(cls, config: TrainConfig) -> Augmentation | None:
        """The run's augmentation, or None when every transform is off; --augment-flip is refused for a dataset
        whose classes do not survive a mirror."""
        augmentation = cls(config.augment_rotate, config.augment_scale, config.augment_elastic,
                           config.augment_elastic_sigma, config.augment_flip)
        if augmentation.flip and not mirror_invariant(config.dataset):
            allowed = ", ".join(name for name in dataset_names() if get_dataset(name).mirror_invariant)
            raise ConfigError(f"--augment-flip is refused for {config.dataset}: a mirrored {config.dataset} image is "
                              f"another symbol or none, not an example of its class. Drop --augment-flip (it suits "
                              f"datasets whose classes survive a mirror: {allowed}).")
        return augmentation if augmentation.active else None

    @property
    def active(self) -> bool:
        return bool(self.rotate or self.scale or self.elastic or self.flip)

    def draw(self, count: int, height: int, width: int, generator: torch.Generator) -> Warp:
        """Random transforms for `count` images. Angles, scales and flips are drawn whether or not they are on,
        in that order, so turning one transform on or off leaves the others' draws as they were."""
        angles = (torch.rand(count, generator=generator) * 2 - 1) * self.rotate
        scales = 1 + (torch.rand(count, generator=generator) * 2 - 1) * self.scale
        flips = (torch.rand(count, generator=generator) < 0.5) & self.flip
        displacement = None
        if self.elastic:
            noise = torch.rand(count, 2, height, width, generator=generator) * 2 - 1
            displacement = gaussian_blur(noise, self.elastic_sigma) * self.elastic
        return Warp(angles, scales, flips, displacement)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images (B, H, W) or (B, H, W, C), uint8 or float -> the same layout as float, each transformed."""
        return apply_warp(images, self.draw(images.shape[0], images.shape[1], images.shape[2], generator))


def mirror_invariant(dataset: str) -> bool:
    """Whether mirrored images keep their class; a dataset outside the registry (the user's own folder of pictures)
    is the user's to judge, so mirroring it is allowed."""
    return dataset not in dataset_names() or get_dataset(dataset).mirror_invariant


def batch_generator(seed: int, epoch: int, number: int) -> torch.Generator:
    """The random stream of batch `number` of `epoch` in a run with `seed`, independent of every other stream."""
    entropy = np.random.SeedSequence([seed % 2**64, epoch, number, AUGMENT_STREAM])
    return torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))


def gaussian_blur(fields: torch.Tensor, sigma: float) -> torch.Tensor:
    """Smooth each (H, W) plane of fields (B, C, H, W) with a Gaussian of std `sigma` pixels, zero outside. The
    weights sum to 1, so no value grows: a field in [-1, 1] stays there."""
    height, width = fields.shape[-2:]
    # Two small matrix products, down the columns then along the rows: (H, H) @ (B, C, H, W) @ (W, W). They cut an
    # epoch of elastically distorted MNIST batches to a third of its time as grouped convolutions
    # (docs/benchmarks.md, "Augmentation").
    return gaussian_band(height, sigma, fields.dtype) @ fields @ gaussian_band(width, sigma, fields.dtype).T


def gaussian_band(size: int, sigma: float, dtype: torch.dtype) -> torch.Tensor:
    """(size, size): row i holds the weights of a Gaussian of std `sigma` centred on i, cut at 3 sigma and
    normalised over that whole window, so that a pixel near the edge loses the weight of the zeros outside."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=dtype)
    window_total = torch.exp(-offsets**2 / (2 * sigma**2)).sum()
    positions = torch.arange(size, dtype=dtype)
    distance = positions[None, :] - positions[:, None]
    return torch.exp(-distance**2 / (2 * sigma**2)) / window_total * (distance.abs() <= radius)


def sampling_grid(transform: Warp, height: int, width: int) -> torch.Tensor:
    """Where each output pixel reads the input: (B, H, W, 2) as (x, y) in grid_sample's [-1, 1] coordinates."""
    # pixel centres relative to the image centre, x to the right and y down: (H, W) each
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32) - (height - 1) / 2,
                          torch.arange(width, dtype=torch.float32) - (width - 1) / 2, indexing="ij")
    x = torch.where(transform.flips[:, None, None], -x, x)  # (B, H, W)
    radians = torch.deg2rad(transform.angles.float())[:, None, None]
    cos, sin = torch.cos(radians), torch.sin(radians)
    scales = transform.scales.float()[:, None, None]
    # The output shows the input turned by +angle and enlarged by scale, so it reads the input at the inverse.
    source_x = (cos * x - sin * y) / scales
    source_y = (sin * x + cos * y) / scales
    if transform.displacement is not None:
        source_x = source_x + transform.displacement[:, 0]
        source_y = source_y + transform.displacement[:, 1]
    # with align_corners=False, the centre of the pixel at offset c from the middle of a side n is 2c/n
    return torch.stack((2 * source_x / width, 2 * source_y / height), dim=-1)


def apply_warp(images: torch.Tensor, transform: Warp) -> torch.Tensor:
    """Resample images (B, H, W) or (B, H, W, C) through `transform`, bilinearly, with background 0 where the
    grid leaves the image; uint8 comes back as float32 in the same 0..255 range."""
    height, width = images.shape[1], images.shape[2]
    planes = images.float() if not images.is_floating_point() else images
    # (B, H, W) -> (B, 1, H, W); (B, H, W, C) -> (B, C, H, W)
    planes = planes.unsqueeze(1) if images.ndim == 3 else planes.permute(0, 3, 1, 2)
    grid = sampling_grid(transform, height, width).to(planes.dtype)
    sampled = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # back to the layout it came in: (B, 1, H, W) -> (B, H, W); (B, C, H, W) -> (B, H, W, C)
    return sampled.squeeze(1) if images.ndim == 3 else sampled.permute(0, 2, 3, 1).contiguous()
