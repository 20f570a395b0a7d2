"""`seqvision report RUN_DIR`: every metric and picture of a run, as files, one HTML page and a Markdown summary.

    RUN_DIR/
      metrics.json          every metric below, with per-class lists and ROC curves
      per_class.csv         precision, recall, F1, AUC and support per class, then macro and weighted averages
      confusion_matrix.csv  counts, true classes in rows
      plots/                confusion.png, confusion_normalised.png, roc.png, misclassified.png,
                            lstm_inside.png (LSTM models: gates and class probabilities, row by row)
      report.html           the whole report in one file, pictures embedded, readable offline
      report.md             a short summary that links the pictures

Everything is computed and written into a staging folder beside the files first; only then is each file
renamed over its old version. A failure while computing or drawing leaves the previous report as it was,
and no file is ever half-written (a crash in the moment of the renames can mix old and new whole files).
"""

from __future__ import annotations

import base64
import html
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqvision.atomic import FILE_MODE
from seqvision.errors import ConfigError
from seqvision.evaluation import plots
from seqvision.evaluation.evaluate import RunEvaluation, evaluate_run
from seqvision.evaluation.metrics import classification_metrics, confusion_csv, per_class_csv
from seqvision.runs.history import HistoryRow, read_history
from seqvision.tables import markdown_table

MISCLASSIFIED_SHOWN = 24
PER_CLASS_HEADER = ["class", "precision", "recall", "F1", "AUC", "support"]
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
                 data_dir: str | os.PathLike[str] | None = None, image_index: int = 0,
                 evaluation: RunEvaluation | None = None) -> ReportFiles:
    """Write the report files of a run's checkpoint; returns where they are. `evaluation` reuses predictions
    already made (as training does); otherwise the checkpoint is evaluated on the test set here."""
    evaluation = evaluation or evaluate_run(run_dir, checkpoint, data_dir=data_dir)
    run, test, predictions = evaluation.run, evaluation.test, evaluation.predictions
    if not 0 <= image_index < len(test.labels):
        raise ConfigError(f"--image must be between 0 and {len(test.labels) - 1}, got {image_index}.")
    info, config = run.read_info(), run.load_config()
    class_names = info.get("classes") or [str(index) for index in range(info["num_classes"])]
    where = {key: evaluation.metrics[key] for key in ("epoch", "checkpoint")}
    metrics = {**where, **classification_metrics(predictions, len(class_names))}
    history = read_history(run.history_path)

    with tempfile.TemporaryDirectory(prefix=".report-", dir=run.path) as staging:
        staged = Path(staging)
        drawn = staged / "plots"
        drawn.mkdir()
        plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, drawn / "confusion.png")
        plots.plot_confusion_matrix(metrics["confusion_matrix"], class_names, drawn / "confusion_normalised.png",
                                    normalise=True)
        plots.plot_roc_curves(metrics["roc"], metrics["auc"], class_names, drawn / "roc.png")
        _draw_misclassified(evaluation, class_names, drawn / "misclassified.png")
        _draw_lstm_inside(evaluation, image_index, class_names, drawn / "lstm_inside.png")
        pictures = {name: path.read_bytes() for name in PICTURES if (path := drawn / name).is_file()}
        if run.curves_path.is_file():
            pictures = {"curves.png": run.curves_path.read_bytes(), **pictures}
        title = f"{config.model} on {config.dataset}: {run.path.name}"
        (staged / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        (staged / "per_class.csv").write_text(per_class_csv(metrics, class_names))
        (staged / "confusion_matrix.csv").write_text(confusion_csv(metrics, class_names))
        (staged / "report.html").write_text(render_html(title, config.to_dict(), metrics, class_names, pictures,
                                                        history))
        (staged / "report.md").write_text(render_markdown(title, metrics, class_names, pictures))
        _swap_in(staged, run.path)
    return ReportFiles(run.path / "report.html", run.path / "report.md", metrics)


def _swap_in(staged: Path, run_path: Path) -> None:
    """Rename every staged file over its counterpart in the run folder (same file system: each rename is atomic)."""
    (run_path / "plots").mkdir(exist_ok=True)
    for path in sorted(staged.rglob("*")):
        if path.is_file():
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
            path.chmod(FILE_MODE)
            os.replace(path, run_path / path.relative_to(staged))


def _draw_misclassified(evaluation: RunEvaluation, class_names: list[str], path: Path) -> None:
    predictions, test = evaluation.predictions, evaluation.test
    probabilities = predictions.probabilities
    confidence, predicted = probabilities.max(dim=1)
    wrong = torch.nonzero(predicted != predictions.labels).flatten()
    order = wrong[torch.argsort(confidence[wrong], descending=True)][:MISCLASSIFIED_SHOWN].numpy()
    plots.plot_misclassified(test.images[order].numpy(), test.labels[order].tolist(), predicted[order].tolist(),
                             confidence[order].tolist(), class_names, path)


@torch.no_grad()
def _draw_lstm_inside(evaluation: RunEvaluation, index: int, class_names: list[str], path: Path) -> None:
    """Only for models whose decision is read from an LSTM's final state, one step at a time."""
    from seqvision.models.recurrent import reads_step_by_step

    model, test = evaluation.model, evaluation.test
    if not reads_step_by_step(model):
        return
    images, _ = test.batch(np.array([index]))
    trace = model.trace(images)
    step_probabilities = model.step_probabilities(trace)[0].numpy()
    gates = {"input gate": trace.input_gate[0], "forget gate": trace.forget_gate[0],
             "output gate": trace.output_gate[0], "cell state": trace.cell[0]}
    label = int(test.labels[index])
    guess = int(step_probabilities[-1].argmax())
    plots.plot_lstm_inside(test.images[index].numpy(), {k: v.numpy() for k, v in gates.items()}, step_probabilities,
                           class_names, f"test image {index}: true {class_names[label]}, predicted "
                           f"{class_names[guess]} ({100 * step_probabilities[-1, guess]:.1f}%), "
                           f"read by {model.scan.mode}", path)


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
                pictures: dict[str, bytes], history: list[HistoryRow]) -> str:
    """One self-contained page: no scripts, no links out, every picture inlined as a data URI."""
    escape = html.escape

    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
        body = "".join("<tr>" + "".join(f"<td>{escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

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
{table(PER_CLASS_HEADER, _per_class_rows(metrics, class_names))}
<h2>Pictures</h2>
{figures}
<h2>Training history</h2>
{table(["epoch", "train loss", "train acc", "val loss", "val acc", "lr", "seconds"], history_rows)}
<h2>Configuration</h2>
<pre>{escape(json.dumps(config, indent=2))}</pre>
</body></html>
"""


def render_markdown(title: str, metrics: dict[str, Any], class_names: list[str], pictures: dict[str, bytes]) -> str:
    parts = [f"# {title}\n", markdown_table(["metric", "value"], _headline(metrics)),
             markdown_table(PER_CLASS_HEADER, _per_class_rows(metrics, class_names))]
    for name in pictures:
        link = name if name == "curves.png" else f"plots/{name}"
        parts.append(f"![{PICTURES[name]}]({link})\n")
    parts.append("The full report, with every picture embedded, is report.html beside this file.\n")
    return "\n".join(parts)


def _per_class_rows(metrics: dict[str, Any], class_names: list[str]) -> list[list[str]]:
    return [[name, f"{metrics['precision'][i]:.4f}", f"{metrics['recall'][i]:.4f}", f"{metrics['f1'][i]:.4f}",
             f"{metrics['auc'][i]:.5f}", str(metrics["support"][i])] for i, name in enumerate(class_names)]
