"""A dataset as arrays in memory, and the stratified hold-out used for validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageSplits:
    """The official train and test parts of a dataset: uint8 images (N, H, W), or (N, H, W, 3) in colour, and int64
    labels (N,)."""

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.train_images.shape[1:])


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out), holding out `fraction` of every class; sorted, seeded."""
    from sklearn.model_selection import train_test_split

    kept, held_out = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(kept), np.sort(held_out)
