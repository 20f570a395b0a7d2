"""Wall-clock of a whole `seqvision train` command, from start to exit, over several seeds, beside the defaults that
seqvision shipped until 2026-11-26 (float32, no shifts, 12 epochs), one command after the other in the same run.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/default_command.py [--seeds 0 1 2]
        [--train-limit N] [--versus REV] [-- OPTION ...]

With --versus, seqvision as it was at git revision REV of this repository runs beside them too, at its own defaults:
its src/ is taken out of git (`git archive`) into the temporary folder and run by this interpreter, with PYTHONPATH
at it. So the whole command of today and of an earlier version meet on the same machine at the same hour, which
this shared machine's speed, changing by half within a day, makes the only fair comparison. 7219ab8, the last
commit before the work of issue 11 began, is the version that issue measured ("84 s today").

Each command is `seqvision train --model lstm --dataset mnist --seed S OPTION ...`, run as a user runs it: a new
process (interpreter start-up, imports, loading MNIST, training, testing and the report included), output to a
pipe, so without a progress bar. Its test accuracy is read from the line it prints; its peak RSS is the child's
own (wait4). The variants take turns: each seed starts with the variant after the one the seed before started
with, so a machine slowing down during the run does not fall on one variant alone. Prints a Markdown table of every
command and the mean +/- standard deviation of each variant, and the ratio of each variant's mean wall-clock time
to the defaults'. Nothing is written but the run folders, in a temporary folder removed at the end.
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

from bench_data import commit_of, require_dataset, run, source_at

SEQVISION = Path(sys.executable).parent / "seqvision"
BASE = ("--model", "lstm", "--dataset", "mnist", "--no-progress")
# The defaults before 2026-11-26, restored with flags.
EARLIER_DEFAULTS = ("--precision", "32", "--augment-shift", "0", "--epochs", "12")
TEST_LINE = re.compile(r"^test accuracy (\d+\.\d+)%", re.MULTILINE)


@dataclass(frozen=True)
class Variant:
    name: str
    argv_start: tuple[str, ...]
    options: tuple[str, ...]
    env: dict[str, str] | None = None


@dataclass(frozen=True)
class Command:
    variant: str
    seed: int
    seconds: float
    test_accuracy: float
    peak_rss_mib: float


def earlier_version(commit: str, options: list[str], folder: Path) -> Variant:
    """seqvision at `commit`, taken out of git into `folder`, as a variant this interpreter runs."""
    env = {**os.environ, "PYTHONPATH": str(source_at(commit, folder))}
    return Variant(f"seqvision at {commit}", (sys.executable, "-m", "seqvision"), tuple(options), env)


def time_command(variant: Variant, seed: int, folder: Path) -> Command:
    out = folder / f"{variant.name.replace(' ', '-')}-{seed}"
    argv = [*variant.argv_start, "train", *BASE, "--seed", str(seed), *variant.options, "--out", str(out)]
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=variant.env)
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        print(output, file=sys.stderr)
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), argv)
    accuracy = TEST_LINE.search(output)
    if accuracy is None:
        raise RuntimeError(f"no 'test accuracy' line in the output of {' '.join(argv)}:\n{output}")
    return Command(variant.name, seed, seconds, float(accuracy.group(1)), usage.ru_maxrss / 1024)


def spread(values: list[float], digits: int) -> str:
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} +/- {deviation:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N images (a quick check)")
    parser.add_argument("--versus", metavar="REV", help="also time seqvision as it was at this git revision, at "
                                                        "its own defaults (7219ab8: before issue 11's work)")
    parser.add_argument("options", nargs="*", help="more `seqvision train` options for every variant, after --")
    args = parser.parse_args()
    versus = commit_of(args.versus) if args.versus else None
    require_dataset("mnist")
    options = [*args.options, *(["--train-limit", str(args.train_limit)] if args.train_limit else [])]
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    commands = []
    with tempfile.TemporaryDirectory() as folder:
        variants = [Variant("defaults", (str(SEQVISION),), tuple(options)),
                    Variant("defaults until 2026-11-26", (str(SEQVISION),), (*EARLIER_DEFAULTS, *options))]
        if versus:
            variants.append(earlier_version(versus, options, Path(folder)))
        for turn, seed in enumerate(args.seeds):
            first = turn % len(variants)
            for variant in variants[first:] + variants[:first]:
                commands.append(time_command(variant, seed, Path(folder)))
                print(f"{variant.name}, seed {seed}: {commands[-1].seconds:.1f} s, "
                      f"{commands[-1].test_accuracy:.2f}%", file=sys.stderr)
    print(f"`seqvision train {' '.join(BASE)} --seed S {' '.join(options)}`, from {started}\n")
    print("| variant | seed | whole command | test accuracy | peak RSS |\n| --- | --- | --- | --- | --- |")
    for command in commands:
        print(f"| {command.variant} | {command.seed} | {command.seconds:.1f} s | {command.test_accuracy:.2f}% "
              f"| {command.peak_rss_mib:.0f} MiB |")
    print()
    means = {}
    for variant in variants:
        chosen = [command for command in commands if command.variant == variant.name]
        means[variant.name] = statistics.mean(command.seconds for command in chosen)
        print(f"- {variant.name}: {spread([c.seconds for c in chosen], 1)} s, "
              f"{spread([c.test_accuracy for c in chosen], 2)}% test accuracy")
    for variant in variants[1:]:
        print(f"- whole command, {variant.name} over the defaults: {means[variant.name] / means['defaults']:.2f}x")


if __name__ == "__main__":
    run(main)
