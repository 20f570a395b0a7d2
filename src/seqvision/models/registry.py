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
from seqvision.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: type[nn.Module]
    description: str


MODELS: Registry[ModelEntry] = Registry("model", ConfigError)


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the class needs a `from_config(config, image_shape, num_classes)` classmethod."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        description = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        MODELS.add(name, ModelEntry(name, cls, description))
        return cls

    return add


def model_names() -> list[str]:
    return MODELS.names()


def get_model_entry(name: str) -> ModelEntry:
    return MODELS.get(name)


def build_model(config: TrainConfig, image_shape: tuple[int, int], num_classes: int) -> nn.Module:
    return get_model_entry(config.model).builder.from_config(config, image_shape, num_classes)
