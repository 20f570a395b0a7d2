"""One table of datasets: the CLI, training and reports find datasets by name here.

Adding a dataset is one loader function with a `@register_dataset(...)` line above it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from seqvision.config import FOLDER_PREFIX, TrainConfig
from seqvision.data.splits import ImageSplits
from seqvision.errors import DatasetError
from seqvision.registry import Registry

Loader = Callable[[Path | None], ImageSplits]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, ...]  # (H, W) grey, (H, W, 3) colour
    num_classes: int
    description: str
    load: Loader
    # The part of the image side its objects are scaled to fill: MNIST fitted each digit into 20x20 of 28x28;
    # the bundled 8x8 digits and Fashion-MNIST fill the whole frame. Pictures are prepared the same way.
    box_fraction: float = 20 / 28
    # Class names, name i for label i: reports, predict, the API and the page show these.
    classes: tuple[str, ...] = tuple(str(digit) for digit in range(10))
    # Whether a left-right mirror image keeps its class (a shoe, a car), so --augment-flip may train on mirrors;
    # not for digits or letters, whose mirror images are other symbols or none.
    mirror_invariant: bool = False
    # Pixels a training image is randomly shifted by when --augment-shift is not given: 2 for 28x28 handwriting,
    # where it bought 0.2-0.3 point of the LSTM's test accuracy on MNIST (docs/results.md); 0 for the others
    # (unmeasured, or for the 8x8 digits a quarter of the image).
    default_shift: int = 0


DATASETS: Registry[DatasetSpec] = Registry("dataset", DatasetError)


def register_dataset(name: str, *, image_shape: tuple[int, ...], num_classes: int, description: str,
                     box_fraction: float = 20 / 28, classes: tuple[str, ...] | None = None,
                     mirror_invariant: bool = False, default_shift: int = 0) -> Callable[[Loader], Loader]:
    names = tuple(classes) if classes is not None else tuple(str(label) for label in range(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"dataset {name} has {num_classes} classes but {len(names)} class names")

    def add(load: Loader) -> Loader:
        DATASETS.add(name, DatasetSpec(name, tuple(image_shape), num_classes, description, load, box_fraction, names,
                                       mirror_invariant, default_shift))
        return load

    return add


def dataset_names() -> list[str]:
    return DATASETS.names()


def get_dataset(name: str, config: TrainConfig | None = None) -> DatasetSpec:
    """A registered dataset, or `folder:PATH`, the user's own pictures (seqvision.data.folder), whose spec the
    config's folder options (--image-size, --colour, --split-file) decide."""
    if name.startswith(FOLDER_PREFIX):
        from seqvision.data.folder import folder_spec

        return folder_spec(name, config)
    return DATASETS.get(name)


def box_fraction(name: str) -> float:
    """DatasetSpec.box_fraction, without reading a folder dataset's folder (a server may not have it)."""
    return 1.0 if name.startswith(FOLDER_PREFIX) else DATASETS.get(name).box_fraction


def augment_shift(config: TrainConfig) -> int:
    """The run's --augment-shift: the config's, or when it gives none its dataset's `default_shift`."""
    if config.augment_shift is not None:
        return config.augment_shift
    return 0 if config.dataset.startswith(FOLDER_PREFIX) else DATASETS.get(config.dataset).default_shift


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None,
                 config: TrainConfig | None = None) -> ImageSplits:
    """Load a dataset's train and test parts (finding or downloading its files); `config` carries the options of
    folder datasets, whose `data_dir`, when given, is where their folder now is."""
    spec = get_dataset(name, config)
    splits = spec.load(Path(data_dir) if data_dir is not None else None)
    if splits.image_shape != spec.image_shape:
        raise DatasetError(f"{name} images from {splits.source} are {splits.image_shape}, not {spec.image_shape}; "
                           "the files belong to another dataset.")
    return splits
