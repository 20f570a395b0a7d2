"""One table of model families: the CLI, presets and reports discover models from it.

Adding a model is one file with a class and a `@register_model("name")` line above it, plus an import in
`seqvision/models/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from seqvision.config import TrainConfig
from seqvision.errors import ConfigError


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: type[nn.Module]
    description: str


_MODELS: dict[str, ModelEntry] = {}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the class needs a `from_config(config, image_shape, num_classes)` classmethod."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model name {name!r} is registered twice")
        description = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        _MODELS[name] = ModelEntry(name, cls, description)
        return cls

    return add


def model_names() -> list[str]:
    return sorted(_MODELS)


def get_model_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; available models: {', '.join(model_names())}.")
    return _MODELS[name]


def build_model(config: TrainConfig, image_shape: tuple[int, int], num_classes: int) -> nn.Module:
    return get_model_entry(config.model).builder.from_config(config, image_shape, num_classes)
