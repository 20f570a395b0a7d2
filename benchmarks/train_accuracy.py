"""Train one configuration end to end and report what docs/results.md records for it.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/train_accuracy.py --model lstm --dataset mnist

Any `seqvision train` option may follow. Prints a Markdown table row (command, test accuracy, epochs,
seconds per epoch and in total, peak resident memory, date, machine) and writes the same as JSON
into the run folder as benchmark.json.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import resource
import shlex
import sys
import time
from datetime import date
from pathlib import Path

from bench_data import require_dataset, run, train_dataset
from seqvision.atomic import write_text_atomic
from seqvision.cli import build_parser
from seqvision.config import TrainConfig, load_preset


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, Python {platform.python_version()}"


def main(argv: list[str]) -> None:
    require_dataset(*train_dataset(argv))
    # Imported once the data is known to be there: Lightning takes seconds to import.
    from seqvision.experiments.train_test import train

    args = build_parser().parse_args(["train", *argv])
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    overrides = {name: value for name, value in vars(args).items() if name in names and value is not None}
    started = time.perf_counter()
    config = load_preset(args.config) if args.config else None
    result = train(config, out=args.out, progress=not args.no_progress, **overrides)
    total = time.perf_counter() - started
    with open(result.run_dir / "history.csv", newline="") as handle:
        epoch_seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    record = {
        "command": "seqvision train " + shlex.join(argv),
        "test_accuracy": result.test_metrics["test_accuracy"],
        "best_epoch": result.test_metrics["epoch"],
        "epochs": result.epochs_trained,
        "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds),
        "training_seconds": sum(epoch_seconds),
        "total_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": date.today().isoformat(),
        "machine": machine(),
        "run_dir": str(result.run_dir),
    }
    write_text_atomic(result.run_dir / "benchmark.json", json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    cells = [f"`{record['command']}`", f"{100 * record['test_accuracy']:.2f}%",
             f"{record['epochs']} (best {record['best_epoch']})", f"{record['seconds_per_epoch']:.1f} s",
             f"{record['training_seconds'] / 60:.1f} min", f"{record['total_seconds'] / 60:.1f} min",
             f"{record['peak_rss_mib']:.0f} MiB", record["date"], record["machine"]]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run(lambda: main(sys.argv[1:]))
