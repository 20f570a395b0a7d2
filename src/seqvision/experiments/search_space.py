"""The hyper-parameter search space of `seqvision tune`, declared as data.

Each row names a TrainConfig option and the distribution its values are drawn from. Architecture rows apply
only to models that take that option (the registry's `defaults`); the hidden size is scaled from the model's
own default, so a 50-unit stacked LSTM and a 32-unit ReNet are searched around their sizes. This module
imports neither torch nor Optuna, so `seqvision tune --help` can print the table in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from seqvision.config import CHOICES, MODEL_DEFAULTED, flag

Kind = Literal["log-uniform", "uniform", "int-log-uniform", "int", "categorical"]


@dataclass(frozen=True)
class Dimension:
    """One searched option: the TrainConfig field it sets and the range its values are drawn from.

    With `scaled`, `low` and `high` are multiples of the model's default for the option."""

    option: str
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    scaled: bool = False

    def bounds(self, model_defaults: Mapping[str, Any]) -> tuple[float, float]:
        if not self.scaled:
            return self.low, self.high
        default = model_defaults[self.option]
        return max(1, round(default * self.low)), max(1, round(default * self.high))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(map(str, self.choices))}"
        low, high = (f"{self.low:g}x", f"{self.high:g}x the model's default") if self.scaled else (
            f"{self.low:g}", f"{self.high:g}")
        return f"{self.kind} from {low} to {high}"


SEARCH_SPACE: tuple[Dimension, ...] = (
    Dimension("lr", "log-uniform", 1e-4, 1e-2),
    Dimension("batch_size", "categorical", choices=(32, 64, 128, 256)),
    # Log-uniform cannot reach 0; 1e-6 is as good as no decay at these learning rates.
    Dimension("weight_decay", "log-uniform", 1e-6, 1e-2),
    Dimension("scheduler", "categorical", choices=CHOICES["scheduler"]),
    Dimension("hidden", "int-log-uniform", 0.25, 2.0, scaled=True),
    Dimension("layers", "int", 1, 3),
    Dimension("dropout", "uniform", 0.0, 0.5),
)


def dimensions_for(model_defaults: Mapping[str, Any], fixed: frozenset[str] = frozenset()) -> list[Dimension]:
    """The rows searched for a model with these registry defaults, less the options held `fixed`."""
    return [row for row in SEARCH_SPACE if row.option not in fixed
            and (row.option not in MODEL_DEFAULTED or row.option in model_defaults)]


def space_help() -> str:
    """The table as `seqvision tune --help` prints it."""
    width = max(len(flag(row.option)) for row in SEARCH_SPACE) + 4
    lines = [f"  --{flag(row.option):<{width}}{row.describe()}" for row in SEARCH_SPACE]
    return "\n".join(lines)
