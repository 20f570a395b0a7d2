"""Wall-clock of a whole `seqvision train` command, from start to exit, over several seeds, beside the defaults that
seqvision shipped until 2026-11-26 (float32, no shifts, 12 epochs), one command after the other in the same run.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/default_command.py [--seeds 0 1 2]
        [--train-limit N] [-- OPTION ...]

Each command is `seqvision train --model lstm --dataset mnist --seed S OPTION ...`, run as a user runs it: a new
process (interpreter start-up, imports, loading MNIST, training, testing and the report included), output to a
pipe, so without a progress bar. Its test accuracy is read from the line it prints; its peak RSS is the child's
own (wait4). Prints a Markdown table of every command and the mean +/- standard deviation of each variant, and the
ratio of their mean wall-clock times. Nothing is written but the run folders, in a temporary folder removed at
the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench_data import require_dataset, run

SEQVISION = Path(sys.executable).parent / "seqvision"
BASE = ("--model", "lstm", "--dataset", "mnist", "--no-progress")
# The defaults before 2026-11-26, restored with flags.
EARLIER_DEFAULTS = ("--precision", "32", "--augment-shift", "0", "--epochs", "12")
TEST_LINE = re.compile(r"^test accuracy (\d+\.\d+)%", re.MULTILINE)


@dataclass(frozen=True)
class Command:
    variant: str
    seed: int
    seconds: float
    test_accuracy: float
    peak_rss_mib: float


def time_command(variant: str, seed: int, options: list[str], folder: Path) -> Command:
    argv = [str(SEQVISION), "train", *BASE, "--seed", str(seed), *options, "--out", str(folder / f"{variant}-{seed}")]
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        print(output, file=sys.stderr)
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), argv)
    accuracy = TEST_LINE.search(output)
    if accuracy is None:
        raise RuntimeError(f"no 'test accuracy' line in the output of {' '.join(argv)}:\n{output}")
    return Command(variant, seed, seconds, float(accuracy.group(1)), usage.ru_maxrss / 1024)


def spread(values: list[float], digits: int) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} +/- {deviation:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N images (a quick check)")
    parser.add_argument("options", nargs="*", help="more `seqvision train` options for both variants, after --")
    args = parser.parse_args()
    require_dataset("mnist")
    options = [*args.options, *(["--train-limit", str(args.train_limit)] if args.train_limit else [])]
    variants = {"defaults": options, "defaults until 2026-11-26": [*EARLIER_DEFAULTS, *options]}
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    commands = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for variant, flags in variants.items():
                commands.append(time_command(variant, seed, flags, Path(folder)))
                print(f"{variant}, seed {seed}: {commands[-1].seconds:.1f} s, {commands[-1].test_accuracy:.2f}%",
                      file=sys.stderr)
    print(f"`seqvision train {' '.join(BASE)} --seed S {' '.join(options)}`, from {started}\n")
    print("| variant | seed | whole command | test accuracy | peak RSS |\n| --- | --- | --- | --- | --- |")
    for command in commands:
        print(f"| {command.variant} | {command.seed} | {command.seconds:.1f} s | {command.test_accuracy:.2f}% "
              f"| {command.peak_rss_mib:.0f} MiB |")
    print()
    means = {}
    for variant in variants:
        chosen = [command for command in commands if command.variant == variant]
        means[variant] = statistics.mean(command.seconds for command in chosen)
        print(f"- {variant}: {spread([c.seconds for c in chosen], 1)} s, "
              f"{spread([c.test_accuracy for c in chosen], 2)}% test accuracy")
    print(f"- whole command, earlier defaults over the defaults: "
          f"{means['defaults until 2026-11-26'] / means['defaults']:.2f}x")


if __name__ == "__main__":
    run(main)
