"""`seqvision report RUN_DIR`: every metric and picture of a run, as files, one HTML page and a Markdown summary.

    RUN_DIR/
      metrics.json          every metric below, with per-class lists and ROC curves
      per_class.csv         precision, recall, F1, AUC and support per class, then macro and weighted averages
      confusion_matrix.csv  counts, true classes in rows
      plots/                confusion.png, confusion_normalised.png, roc.png, misclassified.png,
                            lstm_inside.png (LSTM models: gates and class probabilities, row by row)
      report.html           the whole report in one file, pictures embedded, readable offline
      report.md             a short summary that links the pictures

Everything is computed before anything is written, and each file is replaced atomically, so a failure
leaves the previous report as it was.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqvision.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic
from seqvision.errors import ConfigError
from seqvision.evaluation import plots
from seqvision.evaluation.evaluate import EvaluationSplit, load_checkpoint_model, load_test_split
from seqvision.evaluation.metrics import classification_metrics, confusion_csv, per_class_csv, predict
from seqvision.training.run_folder import RunFolder

MISCLASSIFIED_SHOWN = 24
PICTURES = {
    "curves.png": "Training curves: loss and accuracy, training against validation",
    "confusion.png": "Confusion matrix (counts)",
    "confusion_normalised.png": "Confusion matrix (% of each true class)",
    "roc.png": "ROC curves, one class against the rest",
    "misclassified.png": "The most confidently misclassified test images",
    "lstm_inside.png": "Inside the LSTM: gates, cell state and class probabilities, step by step",
}


@dataclass
class ReportFiles:
    html: Path
    markdown: Path
    metrics: dict[str, Any]


def write_report(run_dir: str | os.PathLike[str], *, checkpoint: str = "best",
                 data_dir: str | os.PathLike[str] | None = None, image_index: int = 0) -> ReportFiles:
    """Evaluate the run's checkpoint on its test set and write the report files; returns where they are."""
    run = RunFolder.open(run_dir)
    split = load_test_split(run, data_dir)
    model, where = load_checkpoint_model(run, checkpoint)
    if not 0 <= image_index < len(split.labels):
        raise ConfigError(f"--image must be between 0 and {len(split.labels) - 1}, got {image_index}.")
    info, config = run.read_info(), run.load_config()
    class_names = [str(index) for index in range(info["num_classes"])]
    predictions = predict(model, split.batches)
    metrics = {**where, **classification_metrics(predictions, info["num_classes"])}

    with tempfile.TemporaryDirectory(prefix=".report-", dir=run.path) as staging:
        drawn = Path(staging)
        plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, drawn / "confusion.png")
        plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, drawn / "confusion_normalised.png",
                                    normalise=True)
        plots.plot_roc_curves(metrics["roc"], metrics["auc"], class_names, drawn / "roc.png")
        _draw_misclassified(predictions, split, class_names, drawn / "misclassified.png")
        _draw_lstm_inside(model, split, image_index, class_names, drawn / "lstm_inside.png")
        pictures = {name: path.read_bytes() for name in PICTURES if (path := drawn / name).is_file()}
    if run.curves_path.is_file():
        pictures = {"curves.png": run.curves_path.read_bytes(), **pictures}

    plots_dir = run.path / "plots"
    plots_dir.mkdir(exist_ok=True)
    for name, data in pictures.items():
        if name != "curves.png":
            write_bytes_atomic(plots_dir / name, data)
    write_json_atomic(run.path / "metrics.json", metrics)
    write_text_atomic(run.path / "per_class.csv", per_class_csv(metrics, class_names))
    write_text_atomic(run.path / "confusion_matrix.csv", confusion_csv(metrics, class_names))
    title = f"{config.model} on {config.dataset}: {run.path.name}"
    html_path, markdown_path = run.path / "report.html", run.path / "report.md"
    write_text_atomic(html_path, render_html(title, config.to_dict(), metrics, class_names, pictures,
                                             _history(run)))
    write_text_atomic(markdown_path, render_markdown(title, metrics, class_names, pictures))
    return ReportFiles(html_path, markdown_path, metrics)


def _draw_misclassified(predictions: Any, split: EvaluationSplit, class_names: list[str], path: Path) -> None:
    probabilities = predictions.probabilities
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != predictions.labels).flatten()
    order = wrong[torch.argsort(confidence[wrong], descending=True)][:MISCLASSIFIED_SHOWN].numpy()
    plots.plot_misclassified(split.images[order], split.labels[order].tolist(), predicted[order].tolist(),
                             confidence[order].tolist(), class_names, path)


@torch.no_grad()
def _draw_lstm_inside(model: nn.Module, split: EvaluationSplit, index: int, class_names: list[str],
                      path: Path) -> None:
    """Only for models whose decision is read from an LSTM's final state, one step at a time."""
    from seqvision.models.pooling import FinalState
    from seqvision.models.recurrent import RecurrentClassifier

    if not (isinstance(model, RecurrentClassifier) and model.kind == "lstm" and not model.bidirectional
            and isinstance(model.pool, FinalState)):
        return
    images, _ = split.batches.batch(np.array([index]))
    trace = model.trace(images)
    # What the classifier would answer if the sequence ended after each step.
    step_probabilities = torch.softmax(model.head(trace.hidden[0]), dim=1).numpy()
    gates = {"input gate": trace.input_gate[0], "forget gate": trace.forget_gate[0],
             "output gate": trace.output_gate[0], "cell state": trace.cell[0]}
    label = int(split.labels[index])
    guess = int(step_probabilities[-1].argmax())
    plots.plot_lstm_inside(split.images[index], {k: v.numpy() for k, v in gates.items()}, step_probabilities,
                           class_names, f"test image {index}: true {class_names[label]}, predicted "
                           f"{class_names[guess]} ({100 * step_probabilities[-1, guess]:.1f}%), "
                           f"read by {model.scan.mode}", path)


def _history(run: RunFolder) -> list[dict[str, str]]:
    if not run.history_path.is_file():
        return []
    with open(run.history_path, newline="") as handle:
        return list(csv.DictReader(handle))


def _headline(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("test accuracy", f"{100 * metrics['test_accuracy']:.2f}%"),
        (f"top-{metrics['top_k']} accuracy", f"{100 * metrics['top_k_accuracy']:.2f}%"),
        ("test loss", f"{metrics['test_loss']:.4f}"),
        ("macro precision / recall / F1", f"{metrics['macro_precision']:.4f} / {metrics['macro_recall']:.4f} / "
                                          f"{metrics['macro_f1']:.4f}"),
        ("weighted F1", f"{metrics['weighted_f1']:.4f}"),
        ("macro AUC (one-vs-rest)", f"{metrics['macro_auc']:.5f}"),
        ("expected calibration error", f"{metrics['ece']:.4f}"),
        ("test images", f"{metrics['test_samples']}"),
        ("checkpoint", f"{metrics['checkpoint']} (epoch {metrics['epoch']})"),
    ]


def render_html(title: str, config: dict[str, Any], metrics: dict[str, Any], class_names: list[str],
                pictures: dict[str, bytes], history: list[dict[str, str]]) -> str:
    """One self-contained page: no scripts, no links out, every picture inlined as a data URI."""
    escape = html.escape

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    per_class = [[name, f"{metrics['precision'][i]:.4f}", f"{metrics['recall'][i]:.4f}", f"{metrics['f1'][i]:.4f}",
                  f"{metrics['auc'][i]:.5f}", str(metrics["support"][i])] for i, name in enumerate(class_names)]
    history_rows = [[row["epoch"], row["train_loss"], row["train_acc"], row.get("val_loss", ""),
                     row.get("val_acc", ""), row.get("lr", ""), row.get("seconds", "")] for row in history]
    figures = "".join(
        f'<figure><img alt="{escape(PICTURES[name])}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>{escape(PICTURES[name])}</figcaption></figure>'
        for name, data in pictures.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f2f2f2; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
pre {{ background: #f7f7f7; padding: 0.8em; }}
</style></head><body>
<h1>{escape(title)}</h1>
<h2>Test metrics</h2>
{table(["metric", "value"], [list(item) for item in _headline(metrics)])}
<h2>Per class</h2>
{table(["class", "precision", "recall", "F1", "AUC", "support"], per_class)}
<h2>Pictures</h2>
{figures}
<h2>Training history</h2>
{table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"], history_rows)}
<h2>Configuration</h2>
<pre>{escape(json.dumps(config, indent=2))}</pre>
</body></html>
"""


def render_markdown(title: str, metrics: dict[str, Any], class_names: list[str], pictures: dict[str, bytes]) -> str:
    lines = [f"# {title}", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in _headline(metrics)]
    lines += ["", "| class | precision | recall | F1 | AUC | support |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {metrics['precision'][i]:.4f} | {metrics['recall'][i]:.4f} | {metrics['f1'][i]:.4f} | "
              f"{metrics['auc'][i]:.5f} | {metrics['support'][i]} |" for i, name in enumerate(class_names)]
    lines.append("")
    for name in pictures:
        link = name if name == "curves.png" else f"plots/{name}"
        lines += [f"![{PICTURES[name]}]({link})", ""]
    lines.append("The full report, with every picture embedded, is report.html beside this file.")
    return "\n".join(lines) + "\n"
