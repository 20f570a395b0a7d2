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
Precision = Literal["auto", "32", "bf16"]
MemoryFormat = Literal["contiguous", "channels-last"]
# Training on several processes (seqvision.training.distributed): one process, or Lightning's DDP.
Strategy = Literal["auto", "ddp"]
# Folder datasets (`--dataset folder:PATH`): how their pictures become images, and what to do with unreadable files.
Colour = Literal["grey", "rgb"]
BadImages = Literal["skip", "fail"]
FOLDER_PREFIX = "folder:"
FOLDER_OPTIONS = ("image_size", "colour", "split_file", "bad_images")

GROUPS = ("data", "model", "optimisation", "run")
# Architecture options whose default belongs to the model (None here): stacked-lstm has 50 units, cnn drops 0.5.
MODEL_DEFAULTED = ("hidden", "layers", "dropout")


def option(default: Any, group: str | None, text: str, **metadata: Any) -> Any:
    """A TrainConfig field with its help text and --help group; group None keeps it off the command line."""
    return field(default=default, metadata={"group": group, "help": text, **metadata})


@dataclass
class TrainConfig:
    """Everything a training run depends on. With the defaults, `lstm` reached 99.10% +/- 0.13 MNIST test accuracy
    over three seeds in about 40 s a command on a 2-core CPU with AVX-512 BF16 (docs/results.md)."""

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
    epochs: int = option(10, "optimisation", "training epochs")
    batch_size: int = option(128, "optimisation", "training batch size, per process when training on several")
    optimizer: Optimizer = option("adam", "optimisation", "adam is AdamW (decoupled weight decay)")
    lr: float = option(2e-3, "optimisation", "learning rate (the peak rate for onecycle)")
    weight_decay: float = option(0.0, "optimisation", "weight decay (decoupled for adam)")
    clip_grad: float = option(1.0, "optimisation", "clip the gradient norm to this value; 0 turns clipping off")
    label_smoothing: float = option(0.0, "optimisation", "training loss against targets that give this much "
                                                         "probability, spread evenly, to all classes (0: off; "
                                                         "0.1 is usual); validation and test losses stay plain",
                                    metavar="EPS")
    ema_decay: float = option(0.0, "optimisation", "also keep a moving average of the weights: each step keeps "
                                                   "DECAY of it and adds 1 - DECAY of the new weights (0: off; "
                                                   "0.999 averages about the last 1,000 steps); validation, "
                                                   "checkpoints, eval, export and serving use the average",
                              metavar="DECAY")
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
    augment_shift: int | None = option(None, "data", "shift each training image by up to N pixels each way, new "
                                                    "shifts every epoch (0: off) [dataset default: 2 for the "
                                                    "28x28 handwriting datasets, else 0]")
    # Random transforms of training images besides the shifts (seqvision.data.augment), seeded like the shifts.
    augment_rotate: float = option(0.0, "data", "rotate each training image by a random angle of up to DEG degrees "
                                                "either way (0: off)", metavar="DEG")
    augment_scale: float = option(0.0, "data", "scale each training image by a random factor in [1-F, 1+F] "
                                               "(0: off; 0.1 is usual)", metavar="F")
    augment_elastic: float = option(0.0, "data", "elastic distortion of strength ALPHA pixels: a random displacement "
                                                 "field smoothed by a Gaussian, as Simard et al. did for digits (0: "
                                                 "off; they used 34 with sigma 4)", metavar="ALPHA")
    augment_elastic_sigma: float = option(4.0, "data", "smoothness of the elastic distortion: the std of its "
                                                       "Gaussian, in pixels", metavar="SIGMA")
    augment_flip: bool = option(False, "data", "mirror half of the training images left to right; only for "
                                               "datasets whose classes survive a mirror (fashion-mnist, cifar10)")
    train_limit: int = option(0, "data", "use only the first N training images (0: all), for quick runs")
    test_limit: int = option(0, "data", "use only the first N test images (0: all)")
    cv_folds: int = option(0, None, "cross-validation: the training set in this many stratified folds (0: off)")
    cv_fold: int = option(0, None, "cross-validation: the fold held out as the test set")
    accelerator: Accelerator = option("auto", "run", "auto uses a GPU when one is visible, else the CPU")
    precision: Precision = option("auto", "run", "32: float32 throughout; bf16: the forward pass under bfloat16 "
                                                 "autocast, weights and optimiser in float32 (2-3x faster steps on "
                                                 "CPUs with AVX-512 BF16; docs/benchmarks.md); auto: bf16 where the "
                                                 "CPU computes in bfloat16 natively and it speeds the model up at "
                                                 "float32's accuracy, else 32 (on GPUs too, where it measured "
                                                 "slower)")
    memory_format: MemoryFormat = option("contiguous", "run", "layout of the convolution weights, and so of the "
                                                             "activations, while training: channels-last makes "
                                                             "bf16 convolution steps about 1.5x faster on this "
                                                             "CPU (docs/benchmarks.md); no effect on recurrent "
                                                             "models")
    # Several processes or machines (seqvision.training.distributed).
    devices: int = option(1, "run", "processes per machine, one per GPU on GPUs (torchrun --nproc-per-node); "
                                    "--batch-size is per process, the global batch is devices x nodes x batch size")
    num_nodes: int = option(1, "run", "machines taking part (torchrun --nnodes)")
    strategy: Strategy = option("auto", "run", "auto: one process, or DDP when devices x nodes > 1; ddp: Lightning's "
                                               "DistributedDataParallel (gloo on the CPU, NCCL on GPUs)")
    dist_timeout: int = option(600, "run", "seconds a process waits for the others in a collective step before it "
                                           "stops with an error (a dead or stuck peer)", metavar="SECONDS")
    data_dir: str | None = option(None, "data", "dataset root (one folder per dataset) or a folder holding the "
                                                "files [$SEQVISION_DATA, then ~/.cache/seqvision, then download]",
                                  metavar="DIR")
    # Folder datasets only (seqvision.data.folder).
    image_size: int = option(28, "data", "folder:PATH datasets: every picture is resized to N x N pixels")
    colour: Colour = option("grey", "data", "folder:PATH datasets: read pictures as greyscale, or as RGB colour "
                                            "(a row is then width x 3 values)")
    split_file: str | None = option(None, "data", "folder:PATH datasets: reuse the train/test split of this split "
                                                  "file (a run folder's split.json) [a seeded fifth of each class, "
                                                  "or the folder's train/ and test/]", metavar="FILE")
    bad_images: BadImages = option("skip", "data", "folder:PATH datasets: skip unreadable picture files with a "
                                                   "warning that counts them, or refuse to train")

    def __post_init__(self) -> None:
        # The API takes a pathlib.Path as readily as a string; the saved YAML holds a string.
        if self.data_dir is not None:
            self.data_dir = os.fspath(self.data_dir)
        if self.split_file is not None:
            self.split_file = os.fspath(self.split_file)

    def validate(self) -> TrainConfig:
        """Reject values that cannot train, before any data is loaded or any file written."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "hidden": self.hidden,
                    "layers": self.layers, "lr": self.lr}
        for name, value in positive.items():
            if value is not None and not value > 0:
                raise ConfigError(f"--{flag(name)} must be positive, got {value}.")
        for name in ("weight_decay", "clip_grad", "early_stop", "augment_shift", "train_limit", "test_limit",
                     "cv_folds", "cv_fold"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ConfigError(f"--{flag(name)} must be zero (off) or positive, got {getattr(self, name)}.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}: 1 would leave no "
                              "weight on the true class.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay}: 1 would never move the average "
                              "from the initial weights (0 turns averaging off).")
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout}: 1 would drop every unit.")
        if self.cv_folds == 1 or (self.cv_folds and not self.cv_fold < self.cv_folds):
            raise ConfigError(f"cross-validation needs at least 2 folds and a fold index below them; got fold "
                              f"{self.cv_fold} of {self.cv_folds}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in (0, 1), got {self.val_fraction}.")
        self._check_augment_options()
        for name in CHOICES:
            check_choice(name, getattr(self, name))
        self._check_folder_options()
        self._check_distributed_options()
        return self

    def _check_augment_options(self) -> None:
        if not 0 <= self.augment_rotate <= 180:
            raise ConfigError(f"--augment-rotate must be in [0, 180] degrees, got {self.augment_rotate}.")
        if not 0 <= self.augment_scale < 1:
            raise ConfigError(f"--augment-scale must be in [0, 1), got {self.augment_scale}: the smallest factor "
                              "is 1 minus it.")
        if self.augment_elastic < 0 or not self.augment_elastic_sigma > 0:
            raise ConfigError(f"--augment-elastic must be zero (off) or positive and --augment-elastic-sigma "
                              f"positive, got {self.augment_elastic} and {self.augment_elastic_sigma}.")

    def _check_folder_options(self) -> None:
        if not self.image_size > 0:
            raise ConfigError(f"--image-size must be positive, got {self.image_size}.")
        if self.dataset.startswith(FOLDER_PREFIX):
            return
        given = [name for name in FOLDER_OPTIONS if getattr(self, name) != getattr(DEFAULTS, name)]
        if given:
            raise ConfigError(f"--{flag(given[0])} applies to folder datasets (--dataset folder:PATH) only; "
                              f"{self.dataset} has its own image size and colours: drop --{flag(given[0])}.")

    def _check_distributed_options(self) -> None:
        for name in ("devices", "num_nodes", "dist_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{flag(name)} must be positive, got {getattr(self, name)}.")

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
