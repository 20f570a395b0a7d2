"""`seqvision compare`: several models, several seeds each, one table and one picture.

Either trains every (model, seed) pair into OUT/<model>-seed<k>/ and compares them, or compares run
folders that already exist. Writes OUT/comparison.md, OUT/comparison.csv and OUT/val_accuracy_vs_time.png.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seqvision.atomic import write_text_atomic
from seqvision.config import TrainConfig
from seqvision.errors import ConfigError
from seqvision.evaluation.plots import plot_accuracy_against_time
from seqvision.experiments.train_test import train
from seqvision.runs.checkpoint import load_run_model
from seqvision.runs.folder import RunFolder
from seqvision.runs.history import read_history
from seqvision.tables import csv_text, markdown_table

SPEED_IMAGES = 2000


@dataclass
class RunSummary:
    """What the comparison needs from one finished run folder."""

    path: Path
    model: str
    seed: int
    parameters: int
    test_accuracy: float
    epochs: int
    seconds_per_epoch: float
    images_per_second: float
    curve: list[tuple[float, float]]  # (seconds since the start of training, validation accuracy) per epoch


@dataclass
class Comparison:
    runs: list[RunSummary]
    markdown: Path
    csv: Path
    plot: Path

    def rows(self) -> list[dict[str, Any]]:
        return summary_rows(self.runs)


def compare(models: Sequence[str] = (), *, run_dirs: Sequence[str | os.PathLike[str]] = (), seeds: int = 1,
            out: str | os.PathLike[str], config: TrainConfig | None = None, progress: bool = False,
            **overrides: Any) -> Comparison:
    """Train `models` with `seeds` seeds each (config and overrides apply to all), or summarise `run_dirs`."""
    if bool(models) == bool(run_dirs):
        raise ConfigError("compare needs either model names to train or existing run folders (--runs), not both.")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}.")
    out = Path(out)
    base = dataclasses.replace(config or TrainConfig(), **overrides)
    if models:
        from seqvision.models import resolve_model_options

        planned = [dataclasses.replace(base, model=name, seed=base.seed + k) for name in models for k in range(seeds)]
        for planned_config in planned:  # every name and option checked before the first, possibly long, run
            resolve_model_options(planned_config.validate())
        paths = [out / f"{c.model}-seed{c.seed}" for c in planned]
        for planned_config, path in zip(planned, paths, strict=True):
            if not (path / "test_metrics.json").is_file():  # finished runs are kept: compare can be re-run
                train(planned_config, out=path, progress=progress, report=False)
        run_dirs = paths
    runs = [summarise_run(path) for path in run_dirs]
    out.mkdir(parents=True, exist_ok=True)
    comparison = Comparison(runs, out / "comparison.md", out / "comparison.csv", out / "val_accuracy_vs_time.png")
    write_text_atomic(comparison.markdown, comparison_markdown(runs))
    write_text_atomic(comparison.csv, comparison_csv(runs))
    plot_accuracy_against_time([(run.model, run.curve) for run in runs], comparison.plot)
    return comparison


def summarise_run(run_dir: str | os.PathLike[str]) -> RunSummary:
    run = RunFolder.open(run_dir)
    if not run.test_metrics_path.is_file():
        raise ConfigError(f"{run.path} has no test_metrics.json: it has not finished training; finish it with "
                          f"`seqvision train --resume {run.path}` or leave it out.")
    metrics = json.loads(run.test_metrics_path.read_text())
    config = run.load_config()
    model, _ = load_run_model(run, metrics.get("checkpoint", "best"))
    history = read_history(run.history_path)
    elapsed, curve = 0.0, []
    for row in history:
        elapsed += float(row["seconds"])
        curve.append((elapsed, float(row["val_acc"])))
    return RunSummary(
        path=run.path, model=config.model, seed=config.seed,
        parameters=sum(p.numel() for p in model.parameters()),
        test_accuracy=metrics["test_accuracy"], epochs=len(history),
        seconds_per_epoch=elapsed / max(len(history), 1),
        images_per_second=inference_speed(model, tuple(run.read_info()["image_shape"])),
        curve=curve,
    )


@torch.inference_mode()
def inference_speed(model: torch.nn.Module, image_shape: tuple[int, int]) -> float:
    """Images classified per second on the CPU, in batches of 1000, best of three timed passes.

    The images are random: the models do the same work whatever the pixels, so no dataset is loaded."""
    model.eval()
    images = torch.randn(SPEED_IMAGES, *image_shape, generator=torch.Generator().manual_seed(0))
    chunks = images.split(1000)
    model(chunks[0])  # warm-up: first calls allocate
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for chunk in chunks:
            model(chunk)
        best = min(best, time.perf_counter() - started)
    return len(images) / best


def summary_rows(runs: Sequence[RunSummary]) -> list[dict[str, Any]]:
    """One row per model, in first-seen order: mean and sample standard deviation over its seeds."""
    by_model: dict[str, list[RunSummary]] = {}
    for run in runs:
        by_model.setdefault(run.model, []).append(run)
    rows = []
    for model, group in by_model.items():
        accuracies = [run.test_accuracy for run in group]
        rows.append({
            "model": model,
            "runs": len(group),
            "parameters": group[0].parameters,
            "test_accuracy_mean": statistics.fmean(accuracies),
            "test_accuracy_std": statistics.stdev(accuracies) if len(group) > 1 else 0.0,
            "epochs": statistics.fmean(run.epochs for run in group),
            "seconds_per_epoch": statistics.fmean(run.seconds_per_epoch for run in group),
            "images_per_second": statistics.fmean(run.images_per_second for run in group),
        })
    return rows


def comparison_markdown(runs: Sequence[RunSummary]) -> str:
    table = markdown_table(
        ["model", "runs", "parameters", "test accuracy (mean +/- std)", "epochs", "s / epoch", "images / s"],
        ([row["model"], row["runs"], f"{row['parameters']:,}",
          f"{100 * row['test_accuracy_mean']:.2f}% +/- {100 * row['test_accuracy_std']:.2f}", f"{row['epochs']:g}",
          f"{row['seconds_per_epoch']:.1f}", f"{row['images_per_second']:,.0f}"] for row in summary_rows(runs)))
    return table + "\nRuns: " + ", ".join(f"`{run.path}` ({100 * run.test_accuracy:.2f}%)" for run in runs) + "\n"


def comparison_csv(runs: Sequence[RunSummary]) -> str:
    rows = summary_rows(runs)
    return csv_text(list(rows[0]), (row.values() for row in rows))
