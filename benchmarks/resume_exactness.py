"""Stop a real training run and resume it; compare with the same run never stopped, through the command line.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/resume_exactness.py --out /tmp/exactness \\
        -- --model lstm --dataset mnist --epochs 5 --seed 5

Runs the train command three times into OUT/: straight through; stopped by a real SIGINT (Ctrl-C) in the
epoch after --stop-after-epochs, then resumed; killed with SIGKILL at the same point, then resumed. Prints,
for each stopped run, the largest weight difference from the straight run, and whether the weights, history.csv
(less its seconds) and test_metrics.json are identical. The tests check the same on small data
(tests/training/test_resume_exact.py); this is the check at full size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench_data import require_dataset, run, train_dataset
from seqvision.runs import RunFolder, read_checkpoint
from seqvision.runs.history import read_history


def train(arguments: list[str], out: Path, *, stop: signal.Signals | None, after_epochs: int, delay: float) -> None:
    command = [sys.executable, "-m", "seqvision", "train", *arguments, "--out", str(out), "--no-progress",
               "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    if stop is not None:
        history = RunFolder(out).history_path
        while len(read_history(history)) < after_epochs:
            if process.poll() is not None:
                raise SystemExit(f"the run ended before it could be stopped: {process.stderr.read().decode()}")
            time.sleep(0.1)
        time.sleep(delay)
        process.send_signal(stop)
    _, stderr = process.communicate()
    if stop is None and process.returncode != 0:
        raise SystemExit(f"training failed: {stderr.decode()[-2000:]}")
    if stop is not None:
        resumed = subprocess.run([sys.executable, "-m", "seqvision", "train", "--resume", str(out), "--no-progress",
                                  "--no-report"], capture_output=True, text=True, check=False)
        if resumed.returncode != 0:
            raise SystemExit(f"the resume failed: {resumed.stderr[-2000:]}")


def compare(stopped: Path, straight: Path) -> str:
    weights = read_checkpoint(RunFolder(stopped).checkpoint("last"))["state_dict"]
    expected = read_checkpoint(RunFolder(straight).checkpoint("last"))["state_dict"]
    largest = max(float((weights[k].double() - expected[k].double()).abs().max()) for k in expected)
    identical = all(torch.equal(weights[k], expected[k]) for k in expected)

    def history(run: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(RunFolder(run).history_path)]

    def metrics(run: Path) -> dict:
        return json.loads(RunFolder(run).test_metrics_path.read_text())

    seconds = [row["seconds"] for row in read_history(RunFolder(stopped).history_path)]
    return (f"largest weight difference {largest:.3g}, weights identical {identical}, history identical "
            f"{history(stopped) == history(straight)}, test metrics identical {metrics(stopped) == metrics(straight)} "
            f"(test accuracy {metrics(stopped)['test_accuracy']:.4f}); seconds per epoch {', '.join(seconds)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the three runs (replaced)")
    parser.add_argument("--stop-after-epochs", type=int, default=2, help="stop once this many epochs are done [2]")
    parser.add_argument("--delay", type=float, default=4.0, help="seconds into the next epoch to stop [4]")
    parser.add_argument("train_arguments", nargs=argparse.REMAINDER, help="after --: the seqvision train options")
    args = parser.parse_args()
    arguments = [a for a in args.train_arguments if a != "--"]
    require_dataset(*train_dataset(arguments))
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    straight = args.out / "straight"
    train(arguments, straight, stop=None, after_epochs=0, delay=0)
    for name, stop in (("ctrl-c", signal.SIGINT), ("kill-9", signal.SIGKILL)):
        train(arguments, args.out / name, stop=stop, after_epochs=args.stop_after_epochs, delay=args.delay)
        print(f"{name}: {compare(args.out / name, straight)}")


if __name__ == "__main__":
    run(main)
