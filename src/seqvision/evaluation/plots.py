"""Pictures of a run, drawn with matplotlib's file backend (no display needed); every file is written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqvision.figures import pyplot, save_figure


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, *,
                          normalise: bool = False) -> None:
    """Heatmap of true (rows) against predicted (columns) classes, each cell labelled with its count or share."""
    plt = pyplot()
    counts = np.asarray(matrix, dtype=np.float64)
    values = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalise else counts
    figure, axes = plt.subplots(figsize=(7, 6))
    image = axes.imshow(values, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="% of the true class" if normalise else "images")
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names)
    axes.set_yticks(ticks, class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title("Confusion matrix" + (" (% of each true class)" if normalise else " (counts)"))
    threshold = values.max() / 2 if values.size else 0
    small = len(class_names) > 12
    for row in ticks:
        for col in ticks:
            if not normalise:
                text = f"{int(counts[row, col])}"
            else:  # one decimal of a percent keeps a 0.3% confusion visible; empty cells stay empty
                text = f"{values[row, col]:.1f}" if counts[row, col] else ""
            axes.text(col, row, text, ha="center", va="center", fontsize=6 if small else 8,
                      color="white" if values[row, col] > threshold else "black")
    figure.tight_layout()
    save_figure(figure, path)


def plot_roc_curves(roc: Sequence[dict[str, list[float]]], auc: Sequence[float], class_names: Sequence[str],
                    path: Path) -> None:
    """One-vs-rest ROC curve for every class, with its AUC in the legend.

    Good classifiers hug the top-left corner, so the right panel repeats the curves with a logarithmic
    false-positive axis, where their differences show.
    """
    plt = pyplot()
    figure, (linear, logarithmic) = plt.subplots(1, 2, figsize=(12, 5.5))
    colours = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    smallest = min((x for curve in roc for x in curve["fpr"] if x > 0), default=1e-4)
    for index, (curve, area, name) in enumerate(zip(roc, auc, class_names, strict=True)):
        colour = colours(index % colours.N)
        linear.plot(curve["fpr"], curve["tpr"], color=colour, lw=1.5, label=f"{name} (AUC {area:.4f})")
        # The first point (0, 0) has no place on a log axis; start from the smallest positive rate.
        logarithmic.step(np.maximum(curve["fpr"], smallest), curve["tpr"], where="post", color=colour, lw=1.5)
    linear.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance (AUC 0.5)")
    linear.set_title("ROC curves, one class against the rest")
    linear.legend(loc="lower right", fontsize=8)
    logarithmic.set_xscale("log")
    logarithmic.set_xlim(smallest, 1.0)
    logarithmic.set_title("The same, false positive rate on a log scale")
    for axes in (linear, logarithmic):
        axes.set_xlabel("false positive rate")
        axes.set_ylabel("true positive rate")
        axes.set_ylim(0.0, 1.01)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)


def plot_misclassified(images: np.ndarray, true: Sequence[int], predicted: Sequence[int],
                       confidence: Sequence[float], class_names: Sequence[str], path: Path, columns: int = 6) -> None:
    """A grid of test images the model got wrong, most confident first, each titled true / predicted.

    The grid is one set of axes with every image placed at its cell, not an axes per image: laying out and drawing
    24 axes made this the slowest picture of the report (benchmarks/report_speed.py)."""
    plt = pyplot()
    count = len(images)
    rows = max(1, -(-count // columns))
    cell_width, cell_height = 1.8, 2.0  # inches; the lower 1.6 of a cell's height holds the image
    figure = plt.figure(figsize=(cell_width * columns, cell_height * rows + 0.4))
    axes = figure.add_axes((0.0, 0.0, 1.0, cell_height * rows / (cell_height * rows + 0.4)))
    axes.set_xlim(0, cell_width * columns)
    axes.set_ylim(cell_height * rows, 0)
    axes.axis("off")
    height, width = images.shape[1:3] if count else (1, 1)
    side = 1.6 / max(height, width)  # inches a pixel, the longer side of an image filling 1.6 inches
    for index in range(count):
        row, column = divmod(index, columns)
        left = column * cell_width + (cell_width - side * width) / 2
        top = row * cell_height + 0.3 + (1.6 - side * height) / 2
        axes.imshow(images[index], cmap="gray_r", extent=(left, left + side * width, top + side * height, top),
                    aspect="auto")
        axes.text((column + 0.5) * cell_width, row * cell_height + 0.25, f"true {class_names[true[index]]}\n"
                  f"predicted {class_names[predicted[index]]} ({100 * confidence[index]:.0f}%)", ha="center",
                  va="bottom", fontsize=8)
    title = "Most confidently misclassified test images" if count else "No misclassified test images"
    figure.suptitle(title, fontsize=11, y=1 - 0.15 / (cell_height * rows + 0.4))
    save_figure(figure, path)


def plot_lstm_inside(image: np.ndarray, gates: dict[str, np.ndarray], step_probabilities: np.ndarray,
                     class_names: Sequence[str], title: str, path: Path) -> None:
    """The image beside its LSTM's gates and cell state over the steps, and the class probabilities after each step.

    `gates` maps a label to a (steps, hidden) array; `step_probabilities` is (steps, classes).
    """
    plt = pyplot()
    panels = 2 + len(gates)
    figure, axes_row = plt.subplots(1, panels, figsize=(3.0 * panels, 4.2))
    axes_row[0].imshow(image, cmap="gray_r")
    axes_row[0].set_title("input image")
    axes_row[0].set_xlabel("column")
    axes_row[0].set_ylabel("row (time step)")
    for axes, (label, values) in zip(axes_row[1:-1], gates.items(), strict=True):
        signed = values.min() < 0
        shown = axes.imshow(values, aspect="auto", cmap="RdBu_r" if signed else "viridis",
                            vmin=-np.abs(values).max() if signed else 0, vmax=np.abs(values).max() if signed else 1)
        figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04)
        axes.set_title(label)
        axes.set_xlabel("hidden unit")
        axes.set_ylabel("time step")
    last = axes_row[-1]
    shown = last.imshow(step_probabilities, aspect="auto", cmap="magma", vmin=0, vmax=1)
    figure.colorbar(shown, ax=last, fraction=0.046, pad=0.04)
    last.set_xticks(range(len(class_names)), class_names, fontsize=7)
    last.set_title("class probabilities")
    last.set_xlabel("class")
    last.set_ylabel("after reading step")
    figure.suptitle(title, fontsize=11)
    # Fixed margins: the panels never change, and tight_layout would draw the figure twice to find them.
    figure.subplots_adjust(left=0.035, right=0.965, bottom=0.14, top=0.84, wspace=0.45)
    save_figure(figure, path)


def plot_accuracy_against_time(curves: Sequence[tuple[str, Sequence[tuple[float, float]]]], path: Path) -> None:
    """Validation accuracy against training seconds, one line per run, one colour per model."""
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab10")
    models = list(dict.fromkeys(model for model, _ in curves))
    labelled = set()
    for model, curve in curves:
        seconds, accuracy = zip(*curve, strict=True)
        axes.plot([s / 60 for s in seconds], [100 * a for a in accuracy], marker="o", ms=3,
                  color=colours(models.index(model) % colours.N), label=None if model in labelled else model)
        labelled.add(model)
    axes.set_xlabel("training time (minutes, validation included)")
    axes.set_ylabel("validation accuracy (%)")
    axes.set_title("Validation accuracy against wall time, every run")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    save_figure(figure, path)
