"""Seconds to write a run's report (metrics files, the pictures, the HTML page), picture by picture, today's code
beside an earlier version's, in alternating rounds.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/report_speed.py RUN_DIR [--versus REV]
        [--rounds 3]

The run folder is copied first and the copy is written to, so RUN_DIR is left as it was. Each round starts one new
process per version (with --versus, seqvision's src/ at git revision REV, taken out of git and put on PYTHONPATH);
the process evaluates the run's best checkpoint (not timed), writes the report once to warm matplotlib up (its
fonts, its first drawing), then times writing it again, and each picture within it. The versions take turns going
first. Prints a Markdown table of the medians over the rounds and the ratio of the two versions' whole reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_data import commit_of, require_dataset, run, run_config, source_at
from seqvision.errors import ConfigError

PICTURES = ("plot_confusion_matrix", "plot_roc_curves", "plot_misclassified", "plot_lstm_inside")


def time_report(run_dir: Path) -> dict[str, float]:
    """Seconds of the second of two reports of `run_dir`, in all and per picture function (summed over its calls)."""
    from seqvision.evaluation import plots, report
    from seqvision.evaluation.evaluate import evaluate_run

    evaluation = evaluate_run(run_dir, "best")
    report.write_report(run_dir, evaluation=evaluation)
    seconds = dict.fromkeys(PICTURES, 0.0)

    def timed(name: str, draw: Callable[..., None]) -> Callable[..., None]:
        def draw_and_count(*args: Any, **kwargs: Any) -> None:
            started = time.perf_counter()
            draw(*args, **kwargs)
            seconds[name] += time.perf_counter() - started

        return draw_and_count

    for name in PICTURES:
        setattr(plots, name, timed(name, getattr(plots, name)))
    started = time.perf_counter()
    report.write_report(run_dir, evaluation=evaluation)
    return {"report": time.perf_counter() - started, **seconds}


def measure_in_child(run_dir: Path, pythonpath: Path | None) -> dict[str, float]:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath else {})}
    # The child's errors reach the terminal, above the one-line error that `run` prints for its failure.
    child = subprocess.run([sys.executable, __file__, str(run_dir), "--child"], stdout=subprocess.PIPE, text=True,
                           env=env, check=True)
    return json.loads(child.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--versus", metavar="REV", help="also time seqvision as it was at this git revision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_report(args.run_dir)))
        return
    if args.rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, not {args.rounds}.")
    versus = commit_of(args.versus) if args.versus else None
    require_dataset(run_config(args.run_dir).dataset)
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "run"
        shutil.copytree(args.run_dir, copy, ignore=shutil.ignore_patterns(".lock"))
        versions = {"today": None, **({f"seqvision at {versus}": source_at(versus, Path(folder))} if versus else {})}
        timings: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
        for turn in range(args.rounds):
            order = list(versions) if turn % 2 == 0 else list(reversed(versions))
            for name in order:
                timings[name].append(measure_in_child(copy, versions[name]))
                print(f"round {turn + 1}, {name}: report {timings[name][-1]['report']:.2f} s", file=sys.stderr)
    print(f"`report_speed.py {args.run_dir}`, {args.rounds} rounds, from {started}; medians in seconds\n")
    print(f"| version | whole report | {' | '.join(name.removeprefix('plot_') for name in PICTURES)} |")
    print(f"| --- | --- | {' | '.join('---' for _ in PICTURES)} |")
    medians = {name: {part: statistics.median(t[part] for t in rows) for part in rows[0]}
               for name, rows in timings.items()}
    for name, median in medians.items():
        print(f"| {name} | {median['report']:.2f} | {' | '.join(f'{median[part]:.2f}' for part in PICTURES)} |")
    if versus:
        print(f"\n- whole report, seqvision at {versus} over today: "
              f"{medians[f'seqvision at {versus}']['report'] / medians['today']['report']:.2f}x")


if __name__ == "__main__":
    run(main)
