"""`seqvision cv`: stratified k-fold cross-validation on the training set.

Fold k's run trains on the other folds (less a validation part for choosing its best checkpoint) and is
tested on fold k; the official test set is not touched. Runs go to OUT/fold<k>/, the summary to
OUT/cv.json, OUT/cv.csv and OUT/cv.md.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqvision.atomic import write_json_atomic, write_text_atomic
from seqvision.config import TrainConfig
from seqvision.experiments.train_test import train
from seqvision.models import resolve_model_options
from seqvision.tables import csv_text, markdown_table


@dataclass
class CrossValidation:
    folds: list[dict[str, Any]]
    mean_accuracy: float
    std_accuracy: float
    summary: Path


def cross_validate(config: TrainConfig | None = None, *, folds: int = 5, out: str | os.PathLike[str],
                   progress: bool = False, **overrides: Any) -> CrossValidation:
    out = Path(out)
    base = resolve_model_options(dataclasses.replace(config or TrainConfig(), **overrides, cv_folds=folds).validate())
    results = []
    for fold in range(folds):
        path = out / f"fold{fold}"
        result = train(dataclasses.replace(base, cv_fold=fold), out=path, progress=progress, report=False)
        results.append({"fold": fold, "run_dir": str(path), "test_accuracy": result.test_metrics["test_accuracy"],
                        "test_loss": result.test_metrics["test_loss"],
                        "test_samples": result.test_metrics["test_samples"], "epochs": result.epochs_trained})
    accuracies = [row["test_accuracy"] for row in results]
    mean, std = statistics.fmean(accuracies), statistics.stdev(accuracies)
    summary = {"model": base.model, "dataset": base.dataset, "folds": folds, "mean_accuracy": mean,
               "std_accuracy": std, "per_fold": results}
    write_json_atomic(out / "cv.json", summary)
    columns = ["fold", "test_accuracy", "test_loss", "test_samples", "epochs"]
    write_text_atomic(out / "cv.csv", csv_text(columns, ([r["fold"], f"{r['test_accuracy']:.6f}",
                                                          f"{r['test_loss']:.6f}", r["test_samples"], r["epochs"]]
                                                         for r in results)))
    table = markdown_table(["fold", "accuracy", "loss", "images", "epochs"],
                           ([r["fold"], f"{100 * r['test_accuracy']:.2f}%", f"{r['test_loss']:.4f}", r["test_samples"],
                             r["epochs"]] for r in results))
    write_text_atomic(out / "cv.md", f"# {folds}-fold cross-validation: {base.model} on {base.dataset}\n\n"
                      f"Accuracy on the held-out fold: **{100 * mean:.2f}% +/- {100 * std:.2f}** "
                      f"(mean +/- sample std).\n\n{table}")
    return CrossValidation(results, mean, std, out / "cv.md")
