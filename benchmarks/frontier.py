"""The time-accuracy frontier of each model family: test accuracy against training seconds, per configuration.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/frontier.py --family cnn [--seeds 0 1 2]
    .venv/bin/python benchmarks/frontier.py --report        # tables and figures from the results so far

Each configuration of a family trains in its own process through the side-by-side harness
(benchmarks/side_by_side.py): the test accuracy is measured after every epoch with the clock stopped, so a
run gives a whole curve of accuracy against training seconds. Rows go to benchmarks/results/frontier.csv,
replacing earlier rows of the same configuration and seed, written after every run to a temporary name and
renamed: an interrupted sweep keeps every run it finished. Then it prints, per family, the table from which a
user picks a configuration for a time budget, and draws docs/frontier/<family>.png (one line per
configuration, the mean over its seeds). `--quick` trains one epoch on 3,000 images to check the suite, and
writes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import side_by_side
from bench_data import mnist_folder, run
from seqvision.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "frontier.csv"
FIGURES = ROOT / "docs" / "frontier"
THRESHOLDS = (0.99, 0.992, 0.995, 0.996)
COLUMNS = ("date", "family", "configuration", "spec", "seed", "epoch", "train_seconds", "test_accuracy",
           "command_seconds", "peak_rss_mib", "best_checkpoint_accuracy")


@dataclass(frozen=True)
class Configuration:
    """One point set of a family's frontier: a config spec for side_by_side.py and how many epochs it trains."""

    family: str
    label: str
    spec: str
    epochs: int


CONFIGURATIONS = (
    # The defaults until 2026-11-26 were float32, no shifts and 12 epochs; the first rows keep them.
    Configuration("lstm", "lstm, float32", "model=lstm,precision=32,augment_shift=0", 12),
    Configuration("lstm", "lstm, bf16", "model=lstm,precision=bf16,augment_shift=0", 12),
    Configuration("lstm", "lstm, bf16, label smoothing 0.1, EMA 0.999",
                  "model=lstm,precision=bf16,augment_shift=0,label_smoothing=0.1,ema_decay=0.999", 12),
    Configuration("lstm", "lstm defaults (bf16 here, 2-pixel shifts, 10 epochs)", "model=lstm", 10),
    Configuration("lstm", "bilstm-mnist preset", "bilstm-mnist", 15),
    Configuration("cnn", "cnn, float32", "model=cnn,precision=32,augment_shift=0", 6),
    Configuration("cnn", "cnn, bf16", "model=cnn,precision=bf16,augment_shift=0", 6),
    Configuration("cnn", "cnn-mnist preset", "cnn-mnist", 15),
    Configuration("cnn-lstm", "cnn-lstm, bf16", "model=cnn-lstm,precision=bf16,augment_shift=0", 6),
    Configuration("cnn-lstm", "cnn-lstm-mnist without label smoothing", "cnn-lstm-mnist,label_smoothing=0", 12),
    Configuration("cnn-lstm", "cnn-lstm-mnist without label smoothing, 16 epochs, channels-last",
                  "cnn-lstm-mnist,label_smoothing=0,memory_format=channels-last", 16),
    Configuration("cnn-lstm", "cnn-lstm-mnist preset (label smoothing 0.1)", "cnn-lstm-mnist", 12),
    Configuration("cnn-lstm", "cnn-lstm-mnist + weight average (EMA 0.999)", "cnn-lstm-mnist,ema_decay=0.999", 12),
    Configuration("renet", "renet, bf16", "model=renet,precision=bf16,augment_shift=0", 6),
    Configuration("renet", "renet-mnist without weight averaging", "renet-mnist,ema_decay=0", 12),
    Configuration("renet", "renet-mnist without label smoothing or weight averaging",
                  "renet-mnist,label_smoothing=0,ema_decay=0", 12),
    Configuration("renet", "renet-mnist, 12 epochs (the preset until 2026-11-26)", "renet-mnist", 12),
    Configuration("renet", "renet-mnist preset (bf16, rotation, scaling, label smoothing, EMA 0.999, 16 epochs)",
                  "renet-mnist", 16),
)
FAMILIES = tuple(dict.fromkeys(configuration.family for configuration in CONFIGURATIONS))


def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, buffer.getvalue())


def record_rows(configuration: Configuration, seed: int, record: dict) -> list[dict[str, str]]:
    epochs = zip(record["train_seconds"], record["test_accuracy"], strict=True)
    return [{"date": date.today().isoformat(), "family": configuration.family, "configuration": configuration.label,
             "spec": configuration.spec, "seed": str(seed), "epoch": str(epoch), "train_seconds": f"{seconds:.2f}",
             "test_accuracy": f"{accuracy:.4f}", "command_seconds": f"{record['command_seconds']:.1f}",
             "peak_rss_mib": f"{record['peak_rss_mib']:.0f}",
             "best_checkpoint_accuracy": f"{record['best_checkpoint_accuracy']:.4f}"}
            for epoch, (seconds, accuracy) in enumerate(epochs, start=1)]


@dataclass
class Curve:
    """A configuration's runs: per epoch, the mean training seconds and test accuracy over its seeds."""

    label: str
    seeds: list[str]
    seconds: list[float]
    accuracy: list[float]
    final_accuracies: list[float]
    # What `seqvision train` reports: the test accuracy of the checkpoint with the lowest validation loss.
    best_checkpoint_accuracies: list[float]
    command_seconds: list[float]
    peak_rss_mib: float


def curves(rows: list[dict[str, str]], family: str) -> list[Curve]:
    result = []
    labels = [c.label for c in CONFIGURATIONS if c.family == family]
    for label in labels:
        runs: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            if row["family"] == family and row["configuration"] == label:
                runs.setdefault(row["seed"], []).append(row)
        if not runs:
            continue
        epochs = min(len(run) for run in runs.values())
        by_epoch = [[run[e] for run in runs.values()] for e in range(epochs)]
        result.append(Curve(
            label, sorted(runs, key=int),
            [statistics.mean(float(r["train_seconds"]) for r in rows_) for rows_ in by_epoch],
            [statistics.mean(float(r["test_accuracy"]) for r in rows_) for rows_ in by_epoch],
            [float(run[epochs - 1]["test_accuracy"]) for run in runs.values()],
            [float(run[0]["best_checkpoint_accuracy"]) for run in runs.values()
             if run[0].get("best_checkpoint_accuracy")],
            [float(run[0]["command_seconds"]) for run in runs.values()],
            max(float(row["peak_rss_mib"]) for run in runs.values() for row in run)))
    return result


def seconds_to(curve: Curve, accuracy: float) -> float | None:
    return next((s for s, a in zip(curve.seconds, curve.accuracy, strict=True) if a >= accuracy), None)


def spread(values: list[float]) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return f"{mean:.2%}"
    return f"{mean:.2%} +/- {100 * statistics.stdev(values):.2f}"


def on_frontier(curve: Curve, family: list[Curve]) -> bool:
    """No other configuration of the family reached a higher final accuracy in fewer training seconds."""
    mean = statistics.mean(curve.final_accuracies)
    return not any(statistics.mean(other.final_accuracies) > mean and other.seconds[-1] <= curve.seconds[-1]
                   for other in family if other is not curve)


def table(family: str, family_curves: list[Curve]) -> str:
    lines = [f"### {family}", "",
             "| configuration | seeds | epochs | training time | whole command | final test accuracy "
             "| best checkpoint's | to 99.0% | to 99.2% | to 99.5% | to 99.6% | peak RSS | frontier |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for curve in family_curves:
        reach = " | ".join(side_by_side.show(seconds_to(curve, t)) for t in THRESHOLDS)
        best = spread(curve.best_checkpoint_accuracies) if curve.best_checkpoint_accuracies else "not recorded"
        lines.append(f"| {curve.label} | {', '.join(curve.seeds)} | {len(curve.seconds)} | "
                     f"{curve.seconds[-1]:.0f} s | {statistics.mean(curve.command_seconds):.0f} s | "
                     f"{spread(curve.final_accuracies)} | {best} | {reach} | {curve.peak_rss_mib:.0f} MiB | "
                     f"{'yes' if on_frontier(curve, family_curves) else ''} |")
    return "\n".join(lines)


def draw(family: str, family_curves: list[Curve], path: Path) -> None:
    from seqvision.figures import pyplot, save_figure

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for curve in family_curves:
        axes.plot(curve.seconds, [100 * a for a in curve.accuracy], marker="o", markersize=3,
                  label=f"{curve.label} ({len(curve.seeds)} seed{'s' if len(curve.seeds) > 1 else ''})")
    for threshold in (99.0, 99.5):
        axes.axhline(threshold, color="grey", linewidth=0.6, linestyle=":")
    axes.set(title=f"{family} on MNIST: test accuracy after each epoch", xlabel="training seconds (2-core CPU)",
             ylabel="test accuracy (%)", ylim=(98.0, 100.0))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(figure, path)


def report(rows: list[dict[str, str]], families: tuple[str, ...], figures: Path | None) -> str:
    sections = []
    for family in families:
        family_curves = curves(rows, family)
        if not family_curves:
            continue
        sections.append(table(family, family_curves))
        if figures is not None:
            draw(family, family_curves, figures / f"{family}.png")
    return "\n\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", action="append", choices=FAMILIES, help="train this family's configurations "
                        "(repeat for several; default: all)")
    parser.add_argument("--only", action="append", metavar="LABEL", help="only the configurations with this label")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--report", action="store_true", help="train nothing: tables and figures from the CSV")
    parser.add_argument("--quick", action="store_true", help="one epoch on 3,000 images, nothing written")
    args = parser.parse_args()
    families = tuple(args.family or FAMILIES)
    if args.report:
        print(report(read_rows(RESULTS), families, FIGURES))
        return
    mnist_folder()
    chosen = [c for c in CONFIGURATIONS if c.family in families and (not args.only or c.label in args.only)]
    if not chosen:
        sys.exit(f"error: no configuration matches; labels: {'; '.join(c.label for c in CONFIGURATIONS)}.")
    quick_rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="seqvision-frontier-") as scratch:
        for configuration in chosen:
            for seed in args.seeds:
                print(f"== {configuration.label}, seed {seed}", file=sys.stderr, flush=True)
                record = side_by_side.run_seqvision(f"{configuration.spec},seed={seed}",
                                                    1 if args.quick else configuration.epochs,
                                                    3000 if args.quick else 0, Path(scratch))
                if args.quick:
                    quick_rows += record_rows(configuration, seed, record)
                    continue
                # Read again just before writing: rows that another sweep or a hand wrote meanwhile are kept.
                rows = [row for row in read_rows(RESULTS) if (row["configuration"], row["seed"]) !=
                        (configuration.label, str(seed))]
                write_rows(RESULTS, rows + record_rows(configuration, seed, record))
    print(report(quick_rows if args.quick else read_rows(RESULTS), families, None if args.quick else FIGURES))


if __name__ == "__main__":
    run(main)
