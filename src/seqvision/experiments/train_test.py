"""`seqvision.train`: train a model, then test its best checkpoint once, and write the report if asked."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqvision.atomic import write_json_atomic
from seqvision.config import TrainConfig
from seqvision.evaluation.evaluate import evaluate_run
from seqvision.training.train import train_model


@dataclass
class TrainResult:
    run_dir: Path
    test_metrics: dict[str, Any]
    epochs_trained: int
    # False on the other processes of a distributed run: process 0 alone tests the model and writes the folder.
    tested: bool = True


def train(config: TrainConfig | None = None, *, out: str | os.PathLike[str] | None = None,
          resume: str | os.PathLike[str] | None = None, progress: bool = True,
          callbacks: Sequence[Any] = (), report: bool = True, **overrides: Any) -> TrainResult:
    """Train a model and write a run folder; returns where it went and its test metrics.

    `overrides` are TrainConfig fields (`train(model="lstm", dataset="digits", epochs=5)`). With `resume`,
    the run folder's saved config is used and only epochs, data_dir and accelerator may change. `callbacks`
    are extra Lightning callbacks. The test set is predicted once, with the batches training already holds:
    test_metrics.json comes from that pass, and so does the report (report.html, metrics.json, plots/)
    when `report` is set. Under distributed training only process 0 tests; the others return `tested` False
    and empty metrics. Raises a SeqvisionError subclass, before any training, for every input it can check.
    """
    trained = train_model(config, out=out, resume=resume, progress=progress, callbacks=callbacks, **overrides)
    if not trained.writes_run_folder:
        return TrainResult(trained.run.path, {}, trained.epochs_trained, tested=False)
    evaluation = evaluate_run(trained.run, "best", test=trained.batches.test, device=trained.device)
    write_json_atomic(trained.run.test_metrics_path, evaluation.metrics)
    if report:
        from seqvision.evaluation.report import write_report

        write_report(trained.run.path, evaluation=evaluation)
    return TrainResult(trained.run.path, evaluation.metrics, trained.epochs_trained)
