"""The one typed configuration that a training run is built from, and the presets that fill it.

Each option is declared once, here: its type (a `Literal` lists the allowed values), its default, its help
text and the group `seqvision train --help` shows it in. The command line, the validation below and the
models' own checks all read these declarations. A run folder stores its config as YAML, read back by
`eval` and `--resume`, so everything that decides a run's result lives here. This module imports no torch,
so the CLI can build and check a config in milliseconds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from seqvision.errors import ConfigError

Scan = Literal["rows", "columns", "pixels", "permuted-pixels"]
Pooling = Literal["last", "attention"]
CellActivation = Literal["tanh", "sigmoid"]
Init = Literal["torch", "keras"]
Optimizer = Literal["adam", "rmsprop", "sgd"]
Scheduler = Literal["none", "plateau", "cosine", "onecycle"]
ValSplit = Literal["stratified", "last"]
Normalise = Literal["standardise", "scale"]
Accelerator = Literal["auto", "cpu", "gpu"]

GROUPS = ("data", "model", "optimisation", "run")
# Architecture options whose default belongs to the model (None here): stacked-lstm has 50 units, cnn drops 0.5.
MODEL_DEFAULTED = ("hidden", "layers", "dropout")


def option(default: Any, group: str | None, text: str, **metadata: Any) -> Any:
    """A TrainConfig field with its help text and --help group; group None keeps it off the command line."""
    return field(default=default, metadata={"group": group, "help": text, **metadata})


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults reach >= 98.8% MNIST test accuracy (docs/results.md)."""

    model: str = option("lstm", "model", "model name (see `seqvision models`)", metavar="NAME")
    dataset: str = option("mnist", "data", "dataset name (see `seqvision datasets`)", metavar="NAME")
    scan: Scan = option("rows", "model", "how a recurrent model reads an image: one step per row, per column, "
                                         "per pixel (sequential MNIST), or per pixel in a fixed shuffled order")
    hidden: int | None = option(None, "model", "recurrent hidden units per direction [model default]")
    layers: int | None = option(None, "model", "stacked recurrent (or ReNet) layers [model default]")
    dropout: float | None = option(None, "model", "dropout before the classifier, in [0, 1) [model default]")
    pooling: Pooling = option("last", "model", "recurrent models classify from the final state, or from an "
                                               "attention-weighted mean of all steps")
    cell_activation: CellActivation = option("tanh", "model", "LSTM cell input/output activation; sigmoid is "
                                                              "Keras's LSTM(activation='sigmoid') and uses the "
                                                              "explicit cell")
    init: Init = option("torch", "model", "weight initialisation: PyTorch's, or Keras's (Glorot, orthogonal "
                                          "recurrent, forget bias 1)")
    epochs: int = option(12, "optimisation", "training epochs")
    batch_size: int = option(128, "optimisation", "training batch size")
    optimizer: Optimizer = option("adam", "optimisation", "adam is AdamW (decoupled weight decay)")
    lr: float = option(2e-3, "optimisation", "learning rate (the peak rate for onecycle)")
    weight_decay: float = option(0.0, "optimisation", "weight decay (decoupled for adam)")
    clip_grad: float = option(1.0, "optimisation", "clip the gradient norm to this value; 0 turns clipping off")
    scheduler: Scheduler = option("cosine", "optimisation", "learning-rate schedule over the planned steps")
    early_stop: int = option(0, "optimisation", "stop after this many epochs without a better validation loss; "
                                                "0 turns it off")
    seed: int = option(0, "run", "random seed: the same seed, data and config give the same weights on the CPU")
    val_fraction: float = option(0.1, "data", "part of the training set held out for validation")
    val_split: ValSplit = option("stratified", "data", "a seeded stratified hold-out, or the last fraction in file "
                                                       "order as Keras's validation_split")
    val_on_test: bool = option(False, "data", "validate on the test set, as seed 002 does (its test accuracy is "
                                              "then optimistic)")
    normalise: Normalise = option("standardise", "data", "pixels to mean 0 and std 1 over the training split, or "
                                                         "only divided by 255 as the seed programs do")
    augment_shift: int = option(0, "data", "shift each training image by up to N pixels each way, new shifts "
                                           "every epoch (0: off; 2 is usual for MNIST)")
    train_limit: int = option(0, "data", "use only the first N training images (0: all), for quick runs")
    test_limit: int = option(0, "data", "use only the first N test images (0: all)")
    cv_folds: int = option(0, None, "cross-validation: the training set in this many stratified folds (0: off)")
    cv_fold: int = option(0, None, "cross-validation: the fold held out as the test set")
    accelerator: Accelerator = option("auto", "run", "auto uses a GPU when one is visible, else the CPU")
    data_dir: str | None = option(None, "data", "dataset root (one folder per dataset) or a folder holding the "
                                                "files [$SEQVISION_DATA, then ~/.cache/seqvision, then download]",
                                  metavar="DIR")

    def __post_init__(self) -> None:
        # The API takes a pathlib.Path as readily as a string; the saved YAML holds a string.
        if self.data_dir is not None:
            self.data_dir = os.fspath(self.data_dir)

    def validate(self) -> TrainConfig:
        """Reject values that cannot train, before any data is loaded or any file written."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "hidden": self.hidden,
                    "layers": self.layers, "lr": self.lr}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"--{flag(name)} must be positive, got {value}.")
        for name in ("weight_decay", "clip_grad", "early_stop", "augment_shift", "train_limit", "test_limit",
                     "cv_folds", "cv_fold"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{flag(name)} must be zero (off) or positive, got {getattr(self, name)}.")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}: 1 would drop every unit.")
        if self.cv_folds == 1 or (self.cv_folds and not self.cv_fold < self.cv_folds):
            raise ConfigError(f"cross-validation needs at least 2 folds and a fold index below them; got fold "
                              f"{self.cv_fold} of {self.cv_folds}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}.")
        for name in CHOICES:
            check_choice(name, getattr(self, name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, origin: str = "the configuration") -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{origin} has unknown keys {unknown}; valid keys are: {', '.join(sorted(known))}.")
        return cls(**values)

    def save(self, path: Path) -> None:
        from seqvision.atomic import write_text_atomic

        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.from_dict(_read_mapping(Path(path)), origin=str(path))


def _choices() -> dict[str, tuple[str, ...]]:
    hints = typing.get_type_hints(TrainConfig)
    return {name: typing.get_args(kind) for name, kind in hints.items() if typing.get_origin(kind) is Literal}


CHOICES: dict[str, tuple[str, ...]] = _choices()
DEFAULTS = TrainConfig()


def check_choice(name: str, value: str) -> None:
    """Refuse a value outside the declared choices of option `name`, listing them."""
    if value not in CHOICES[name]:
        raise ConfigError(f"unknown --{flag(name)} {value!r}; choose one of: {', '.join(CHOICES[name])}.")


def flag(name: str) -> str:
    return name.replace("_", "-")


# Presets ship inside the package (seqvision/presets/*.yaml), so they work from an installed wheel too.
# Each file is a config plus a `preset:` mapping that says what it reproduces and its documented result.
PRESET_INFO_KEY = "preset"


@dataclass(frozen=True)
class Preset:
    name: str
    reproduces: str
    result: str
    config: TrainConfig


@functools.cache
def presets() -> dict[str, Preset]:
    found = {}
    for entry in resources.files("seqvision").joinpath("presets").iterdir():
        if entry.name.endswith(".yaml"):
            name = entry.name.removesuffix(".yaml")
            found[name] = _preset_from(name, yaml.safe_load(entry.read_text()), origin=f"preset {name}")
    return dict(sorted(found.items()))


def preset_names() -> list[str]:
    return list(presets())


def load_preset(name_or_path: str | Path) -> TrainConfig:
    """A config file by path, or a preset by name (`seed-000-lstm`); `seqvision presets` lists them."""
    path = Path(name_or_path)
    if path.is_file():
        return _preset_from(path.stem, _read_mapping(path), origin=str(path)).config
    if str(name_or_path) in presets():
        return presets()[str(name_or_path)].config
    raise ConfigError(f"no config file {str(name_or_path)!r} and no preset of that name; "
                      f"presets: {', '.join(preset_names())}.")


def _preset_from(name: str, values: dict[str, Any], *, origin: str) -> Preset:
    values = dict(values)
    info = values.pop(PRESET_INFO_KEY, None) or {}
    config = TrainConfig.from_dict(values, origin=origin)
    return Preset(name, info.get("reproduces", ""), info.get("result", ""), config)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read the configuration {path}: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path} does not hold a mapping of options; it is not a seqvision config.")
    return values
