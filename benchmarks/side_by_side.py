"""seqvision against the seed programs in Keras, one after the other in one run: speed, accuracy, time to accuracy.

    make bench-env     # once: the Keras environment (.venv-keras), never a dependency of seqvision
    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/side_by_side.py [--quick] [--only RUN]
        [--rounds N]

Each pair runs the Keras seed program (benchmarks/keras_seeds.py, under .venv-keras) and then seqvision's
preset that reproduces it, each in its own process so peak memory is its own; then seqvision's defaults.
Both sides measure the test accuracy after every epoch with the clock stopped, so "train seconds" is
wall-clock training time from the start of fit (validation and checkpoints included, as in Keras's fit).

Writes benchmarks/results/side_by_side.csv (one row per run and epoch) and prints the Markdown tables for
docs/benchmarks.md. Everything is written at the end, to temporary names then renamed, so an interrupted
run leaves the previous results as they were. `--quick` trains on 3,000 images for one epoch, to check the
suite works, not to measure. `--rounds N` runs every pair N times, Keras first in odd rounds and seqvision
first in even ones, and prints each pair's speed-ups round by round with their median: this machine's speed
drifts within minutes, and not by the same amount for both frameworks.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from bench_data import mnist_folder, run
from seqvision.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
KERAS_PYTHON = ROOT / ".venv-keras" / "bin" / "python"
RESULTS = ROOT / "benchmarks" / "results" / "side_by_side.csv"
THRESHOLDS = (0.99, 0.992, 0.995)
ROUND_MARK = " (round "

# (name, Keras program or None, seqvision config, epochs): the Keras epochs follow the measured table.
RUNS = (
    ("seed 000 LSTM(128), sigmoid", "seed-000-lstm", "seed-000-lstm", 10),
    ("seed 002 LSTM(50)x2", "seed-002-stacked-lstm", "seed-002-stacked-lstm", 10),
    ("seed 002 CNN", "seed-002-cnn", "seed-002-cnn", 3),
    ("default lstm", None, "model=lstm", 4),
    ("default cnn", None, "model=cnn", 2),
)


def run_keras(program: str, epochs: int, train_limit: int, folder: Path, scratch: Path) -> dict:
    out = scratch / f"{program}.json"
    command = [str(KERAS_PYTHON), str(ROOT / "benchmarks" / "keras_seeds.py"), program, "--data-dir", str(folder),
               "--epochs", str(epochs), "--train-limit", str(train_limit), "--out", str(out)]
    subprocess.run(command, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(out.read_text())


def file_stem(spec: str) -> str:
    """A config spec as a file name: `seed-002-cnn,precision=bf16` -> `seed-002-cnn_precision-bf16`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", spec.replace(",", "_"))


def run_seqvision(config: str, epochs: int, train_limit: int, scratch: Path) -> dict:
    out = scratch / f"seqvision-{file_stem(config)}.json"
    command = [sys.executable, __file__, "--seqvision-side", config, "--epochs", str(epochs),
               "--train-limit", str(train_limit), "--scratch", str(scratch), "--out", str(out)]
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def config_from_spec(spec: str, config_class: type, load_preset) -> object:
    """A config from `PRESET`, `key=value,...` or `PRESET,key=value,...`; values are read as YAML scalars."""
    import yaml

    items = spec.split(",")
    config = config_class() if "=" in items[0] else load_preset(items.pop(0))
    defaults = config_class()
    for item in items:
        key, value = item.split("=", 1)
        parsed = yaml.safe_load(value)
        # Choices such as --precision 32 are strings in the config even when they read as numbers.
        setattr(config, key, str(parsed) if isinstance(getattr(defaults, key), str) else parsed)
    return config


def seqvision_side(config_name: str, epochs: int, train_limit: int, scratch: Path, out: Path) -> None:
    """One seqvision training in this process, with the test accuracy measured after each epoch off the clock."""
    import lightning as L
    import torch

    from seqvision import __version__
    from seqvision.config import TrainConfig, load_preset
    from seqvision.experiments.train_test import train

    class TestAccuracyOffTheClock(L.Callback):
        def __init__(self) -> None:
            self.train_seconds: list[float] = []
            self.test_accuracy: list[float] = []
            self.paused = 0.0
            self.started = 0.0

        def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            paused_at = time.perf_counter()
            self.train_seconds.append(paused_at - self.started - self.paused)
            pl_module.eval()
            correct = count = 0
            with torch.inference_mode():
                for images, labels in trainer.datamodule.batches.test:
                    correct += int((pl_module(images.to(pl_module.device)).argmax(1).cpu() == labels).sum())
                    count += len(labels)
            pl_module.train()
            self.test_accuracy.append(correct / count)
            self.paused += time.perf_counter() - paused_at

    config = config_from_spec(config_name, TrainConfig, load_preset)
    clock = TestAccuracyOffTheClock()
    started = time.perf_counter()
    result = train(config, out=scratch / f"run-{file_stem(config_name)}", progress=False, report=False,
                   callbacks=[clock], epochs=epochs, train_limit=train_limit)
    record = {"framework": f"seqvision {__version__}, torch {torch.__version__}", "epochs": epochs,
              "train_seconds": clock.train_seconds, "test_accuracy": clock.test_accuracy,
              "final_test_accuracy": clock.test_accuracy[-1], "best_checkpoint_accuracy":
              result.test_metrics["test_accuracy"], "command_seconds": time.perf_counter() - started,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    out.write_text(json.dumps(record, indent=1))


def seconds_to(record: dict, accuracy: float) -> float | None:
    """Training seconds until the test accuracy first reached `accuracy`, or None if it never did."""
    for seconds, reached in zip(record["train_seconds"], record["test_accuracy"], strict=True):
        if reached >= accuracy:
            return seconds
    return None


def show(seconds: float | None) -> str:
    return "not reached" if seconds is None else f"{seconds:.0f} s"


def speed_up(keras: dict, ours: dict) -> float:
    """Keras's seconds per epoch over seqvision's."""
    return (keras["train_seconds"][-1] / keras["epochs"]) / (ours["train_seconds"][-1] / ours["epochs"])


def round_by_round(results: list[tuple[str, dict | None, dict]]) -> str:
    """Each pair's speed-ups per epoch in the order measured, and their median."""
    by_pair: dict[str, list[float]] = {}
    for label, keras, ours in results:
        if keras is not None:
            by_pair.setdefault(label.split(ROUND_MARK)[0], []).append(speed_up(keras, ours))
    return "\n".join(f"- {name}: " + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
                     + f" (median {statistics.median(ratios):.2f}x)" for name, ratios in by_pair.items())


def tables(results: list[tuple[str, dict | None, dict]]) -> str:
    lines = ["| run | Keras: s/epoch, test acc, peak RSS | seqvision: s/epoch, test acc, peak RSS "
             "| speed-up per epoch |", "| --- | --- | --- | --- |"]
    for name, keras, ours in results:
        ours_epoch = ours["train_seconds"][-1] / ours["epochs"]
        ours_text = f"{ours_epoch:.1f}, {ours['final_test_accuracy']:.2%}, {ours['peak_rss_mib']:.0f} MiB"
        if keras is None:
            lines.append(f"| {name} | - | {ours_text} | - |")
            continue
        keras_epoch = keras["train_seconds"][-1] / keras["epochs"]
        keras_text = f"{keras_epoch:.1f}, {keras['final_test_accuracy']:.2%}, {keras['peak_rss_mib']:.0f} MiB"
        lines.append(f"| {name} | {keras_text} | {ours_text} | {speed_up(keras, ours):.2f}x |")
    lines += ["", "Time to accuracy (training seconds until the test accuracy first reaches it):", "",
              "| run | side | Keras program's final | 99.0% | 99.2% | 99.5% |", "| --- | --- | --- | --- | --- | --- |"]
    for name, keras, ours in results:
        target = keras["final_test_accuracy"] if keras else None
        for side, record in (("Keras", keras), ("seqvision", ours)):
            if record is None:
                continue
            first = f"{show(seconds_to(record, target))} (to {target:.2%})" if target else "-"
            lines.append(f"| {name} | {side} | {first} | "
                         + " | ".join(show(seconds_to(record, t)) for t in THRESHOLDS) + " |")
    return "\n".join(lines)


def csv_rows(results: list[tuple[str, dict | None, dict]], kept: list[list[str]]) -> str:
    """The CSV of `results`, after `kept`: earlier rows (without the header) of runs not measured this time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["date", "run", "framework", "epoch", "train_seconds", "test_accuracy", "peak_rss_mib"])
    writer.writerows(kept)
    for name, keras, ours in results:
        for record in (keras, ours):
            if record is None:
                continue
            for epoch, (seconds, accuracy) in enumerate(zip(record["train_seconds"], record["test_accuracy"],
                                                            strict=True), start=1):
                writer.writerow([date.today().isoformat(), name, record["framework"], epoch, f"{seconds:.2f}",
                                 f"{accuracy:.4f}", f"{record['peak_rss_mib']:.0f}"])
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 training images and one epoch: a smoke check")
    parser.add_argument("--only", action="append", choices=[name for name, *_ in RUNS], metavar="RUN",
                        help="run only this pair (repeat for several); the CSV keeps the other runs' rows. "
                             f"Runs: {'; '.join(name for name, *_ in RUNS)}")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="run every pair N times, alternating which side goes first, and print the median "
                             "speed-up of each pair [1]")
    parser.add_argument("--seqvision-side", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--train-limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        sys.exit(f"error: --rounds must be at least 1, not {args.rounds}.")
    if args.seqvision_side:
        seqvision_side(args.seqvision_side, args.epochs, args.train_limit, args.scratch, args.out)
        return
    folder = mnist_folder()
    if not KERAS_PYTHON.is_file():
        sys.exit(f"error: the Keras environment {KERAS_PYTHON.parent.parent} does not exist. "
                 "Create it with `make bench-env` (TensorFlow's CPU build and Keras, about 1 GB).")
    train_limit = 3000 if args.quick else 0
    chosen = [entry for entry in RUNS if not args.only or entry[0] in args.only]
    results = []
    with tempfile.TemporaryDirectory(prefix="seqvision-side-by-side-") as scratch:
        for round_number in range(1, args.rounds + 1):
            round_folder = Path(scratch) / f"round-{round_number}"
            round_folder.mkdir()
            keras_first = round_number % 2 == 1
            for name, program, config, epochs in chosen:
                label = name if args.rounds == 1 else f"{name}{ROUND_MARK}{round_number})"
                epochs = 1 if args.quick else epochs
                print(f"== {label}", file=sys.stderr, flush=True)
                keras = None
                if program and keras_first:
                    keras = run_keras(program, epochs, train_limit, folder, round_folder)
                ours = run_seqvision(config, epochs, train_limit, round_folder)
                if program and not keras_first:
                    keras = run_keras(program, epochs, train_limit, folder, round_folder)
                results.append((label, keras, ours))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        names = {name for name, *_ in chosen}
        earlier = list(csv.reader(io.StringIO(RESULTS.read_text())))[1:] if RESULTS.is_file() else []
        write_text_atomic(RESULTS, csv_rows(results, [row for row in earlier
                                                      if row[1].split(ROUND_MARK)[0] not in names]))
    print(tables(results))
    if args.rounds > 1:
        print("\nSpeed-up per epoch, round by round:\n\n" + round_by_round(results))


if __name__ == "__main__":
    run(main)
