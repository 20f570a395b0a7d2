"""One table of datasets: the CLI, training and reports find datasets by name here.

Adding a dataset is one loader function with a `@register_dataset(...)` line above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seqvision.data.splits import ImageSplits
from seqvision.errors import DatasetError

Loader = Callable[[Path | None], ImageSplits]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, int]
    num_classes: int
    description: str
    load: Loader


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, image_shape: tuple[int, int], num_classes: int,
                     description: str) -> Callable[[Loader], Loader]:
    def add(load: Loader) -> Loader:
        if name in _DATASETS:
            raise ValueError(f"dataset name {name!r} is registered twice")
        _DATASETS[name] = DatasetSpec(name, tuple(image_shape), num_classes, description, load)
        return load

    return add


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    if name not in _DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; available datasets: {', '.join(dataset_names())}.")
    return _DATASETS[name]


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> ImageSplits:
    """Load a registered dataset's train and test parts into memory (finding or downloading its files)."""
    spec = get_dataset(name)
    splits = spec.load(Path(data_dir) if data_dir is not None else None)
    if splits.image_shape != spec.image_shape:
        raise DatasetError(f"{name} images from {splits.source} are {splits.image_shape}, not {spec.image_shape}; "
                           "the files belong to another dataset.")
    return splits
