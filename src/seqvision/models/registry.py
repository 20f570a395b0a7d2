"""One table of model families: the CLI, presets and reports discover models from it.

Adding a model is one file in `seqvision/models/` (the package imports every module in it) with a class
and a `@register_model("name")` line above it. The class states what it accepts:

- `defaults`: its values for the architecture options it uses (hidden, layers, dropout); a config that
  leaves one of them None gets the model's value, and setting one the model does not use is refused;
- `scans`: the sequence modes it can read (`--scan`);
- `options`: which of `pooling` and `cell_activation` it honours beyond their defaults;
- `from_config(config, image_shape, num_classes)`: builds it from a resolved config;
- optionally `cpu_autocast_pays(config)`: False where bf16 autocast makes its CPU training steps no faster, so that
  `--precision auto` keeps float32 for it (true when the class does not say).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from seqvision.config import DEFAULTS, MODEL_DEFAULTED, TrainConfig
from seqvision.errors import ConfigError
from seqvision.registry import Registry

# Options that only some models honour; the others accept only the default value.
OPTIONAL_FEATURES = ("pooling", "cell_activation")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: type[nn.Module]
    description: str

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.builder.defaults)

    @property
    def scans(self) -> tuple[str, ...]:
        return tuple(self.builder.scans)

    def cpu_autocast_pays(self, config: TrainConfig) -> bool:
        """Whether bf16 autocast shortens this model's training step on a CPU that computes bfloat16 natively."""
        decide = getattr(self.builder, "cpu_autocast_pays", None)
        return True if decide is None else decide(config)


MODELS: Registry[ModelEntry] = Registry("model", ConfigError)


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator for a model family (see the module docstring for what the class provides)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        description = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        MODELS.add(name, ModelEntry(name, cls, description))
        return cls

    return add


def model_names() -> list[str]:
    return MODELS.names()


def get_model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def resolve_model_options(config: TrainConfig) -> TrainConfig:
    """Fill the architecture options the config leaves open with the model's defaults, and refuse options
    and sequence modes the model cannot use, naming what it can."""
    entry = get_model_entry(config.model)
    if config.scan not in entry.scans:
        raise ConfigError(f"model {entry.name} cannot read images with --scan {config.scan}; it accepts "
                          f"{', '.join(entry.scans)}. The recurrent models (lstm, gru, rnn, bilstm, stacked-lstm) "
                          "read every sequence mode.")
    filled = {}
    for name in MODEL_DEFAULTED:
        value = getattr(config, name)
        if name in entry.defaults:
            filled[name] = entry.defaults[name] if value is None else value
        elif value is not None:
            takes = ", ".join("--" + key for key in entry.defaults) or "none of --hidden, --layers, --dropout"
            raise ConfigError(f"model {entry.name} has no --{name} option; it takes {takes}.")
    for name in OPTIONAL_FEATURES:
        if getattr(config, name) != getattr(DEFAULTS, name) and name not in entry.builder.options:
            raise ConfigError(f"model {entry.name} does not support --{name.replace('_', '-')} "
                              f"{getattr(config, name)}; it applies to the recurrent models.")
    return dataclasses.replace(config, **filled)


def with_defaults(defaults: dict[str, Any], **given: Any) -> list[Any]:
    """The given architecture options in order, each None replaced by the model's `defaults` (their one
    statement): `hidden, dropout = with_defaults(self.defaults, hidden=hidden, dropout=dropout)`."""
    return [defaults[name] if value is None else value for name, value in given.items()]


def build_model(config: TrainConfig, image_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    from seqvision.models.init import initialise

    config = resolve_model_options(config)
    model = get_model_entry(config.model).builder.from_config(config, tuple(image_shape), num_classes)
    initialise(model, config.init)
    return model
