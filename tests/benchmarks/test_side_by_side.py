"""benchmarks/side_by_side.py's summary of several rounds: each pair's speed-ups in order, and their median."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def record(seconds_per_epoch: float, epochs: int = 3) -> dict:
    return {"epochs": epochs, "train_seconds": [seconds_per_epoch * (epoch + 1) for epoch in range(epochs)]}


def test_rounds_are_summarised_per_pair_with_their_median(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    side_by_side = importlib.import_module("side_by_side")
    results = [
        ("seed 002 CNN (round 1)", record(50.0), record(25.0)),
        ("default lstm (round 1)", None, record(5.0)),
        ("seed 002 CNN (round 2)", record(60.0), record(20.0)),
        ("seed 002 CNN (round 3)", record(45.0), record(25.0)),
    ]
    assert side_by_side.round_by_round(results) == "- seed 002 CNN: 2.00x, 3.00x, 1.80x (median 2.00x)"
