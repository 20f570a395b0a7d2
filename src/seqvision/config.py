"""The one typed configuration that a training run is built from.

It is written to every run folder as YAML and read back by `eval` and `--resume`, so everything that
decides a run's result lives here. This module imports no torch, so the CLI can build and check a
config in milliseconds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from seqvision.errors import ConfigError

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULERS = ("none", "plateau", "cosine", "onecycle")
SCANS = ("rows", "columns", "pixels", "permuted-pixels")
ACCELERATORS = ("auto", "cpu", "gpu")
INITS = ("torch", "keras")
POOLINGS = ("last", "attention")
CELL_ACTIVATIONS = ("tanh", "sigmoid")
VAL_SPLITS = ("stratified", "last")
NORMALISATIONS = ("standardise", "scale")
# Architecture options whose default belongs to the model (None here): stacked-lstm has 50 units, cnn drops 0.5.
MODEL_DEFAULTED = ("hidden", "layers", "dropout")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Defaults reach >= 98.8% MNIST test accuracy (docs/results.md)."""

    model: str = "lstm"
    dataset: str = "mnist"
    scan: str = "rows"
    hidden: int | None = None
    layers: int | None = None
    dropout: float | None = None
    pooling: str = "last"
    cell_activation: str = "tanh"
    init: str = "torch"
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    scheduler: str = "cosine"
    early_stop: int = 0
    seed: int = 0
    val_fraction: float = 0.1
    val_split: str = "stratified"
    val_on_test: bool = False
    normalise: str = "standardise"
    augment_shift: int = 0
    train_limit: int = 0
    test_limit: int = 0
    cv_folds: int = 0
    cv_fold: int = 0
    accelerator: str = "auto"
    data_dir: str | None = None

    def validate(self) -> TrainConfig:
        """Reject values that cannot train, before any data is loaded or any file written."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "hidden": self.hidden,
                    "layers": self.layers, "lr": self.lr}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"--{_flag(name)} must be positive, got {value}.")
        for name in ("weight_decay", "clip_grad", "early_stop", "augment_shift", "train_limit", "test_limit",
                     "cv_folds", "cv_fold"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)} must be zero (off) or positive, got {getattr(self, name)}.")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}: 1 would drop every unit.")
        if self.cv_folds == 1 or (self.cv_folds and not self.cv_fold < self.cv_folds):
            raise ConfigError(f"cross-validation needs at least 2 folds and a fold index below them; got fold "
                              f"{self.cv_fold} of {self.cv_folds}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}.")
        for name, allowed in (("optimizer", OPTIMIZERS), ("scheduler", SCHEDULERS), ("scan", SCANS),
                              ("accelerator", ACCELERATORS), ("init", INITS), ("pooling", POOLINGS),
                              ("cell_activation", CELL_ACTIVATIONS), ("val_split", VAL_SPLITS),
                              ("normalise", NORMALISATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown --{name} {getattr(self, name)!r}; choose one of: {', '.join(allowed)}.")
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
        try:
            values = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read the configuration {path}: {error}") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{path} does not hold a mapping of options; it is not a seqvision config.")
        return cls.from_dict(values, origin=str(path))


PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs"


def preset_names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> TrainConfig:
    """A config file by path, or a preset by name from the project's configs/ folder (`seed-000-lstm`)."""
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"no config file {name_or_path!r} and no preset of that name; "
                          f"presets: {', '.join(preset_names()) or f'none found in {PRESETS_DIR}'}.")
    return TrainConfig.load(path)


def _flag(name: str) -> str:
    return name.replace("_", "-")
