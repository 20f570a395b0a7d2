"""The suite on a CUDA GPU: training-step times, then whole trainings through seqvision's train().

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/gpu_suite.py [--budget SECONDS] [--out FILE]
    .venv/bin/python benchmarks/gpu_suite.py --quick      # checks the suite on the CPU in a minute; measures nothing

1. Steps: forward, backward and an AdamW step of each model on random 28x28 inputs, at batch 128
   and 1024, in float32 and under bf16 autocast, alternated so that drift falls on both alike; the LSTM also
   with the explicit cell (models/cells.py) in place of cuDNN's, and the recurrent cells pixel by pixel (784
   steps of one value). Each time is the median of five timings of ten steps (three of three pixel by
   pixel), the GPU synchronised around each.
2. Trainings, in order, each in its own process through benchmarks/side_by_side.py (the test accuracy after
   every epoch with the clock stopped): the default `lstm`; the pixel-by-pixel LSTM (sequential MNIST) in
   float32, since its 784-step recurrences are where bf16 rounding would build up; `lstm` at batch 1024; the
   cnn-lstm-mnist preset; the permuted-pixel LSTM. A run whose estimated time (from its step time) does not fit
   in what is left of --budget is skipped and says so; the pixel runs get as many epochs as fit in their share.
   Follow-ups run only when named with --only: the pixel-by-pixel LSTM again at lr 1e-3 with Keras's
   initialisation, whose forget-gate bias of 1 is the usual help for long sequences.

Results go to --out (default benchmarks/results/gpu_suite.json) after every part, written to a temporary name
and renamed, so a run stopped anywhere keeps every part it finished; the Markdown tables for docs/benchmarks.md
are printed at the end; `--report` prints them again from results files. Without a CUDA GPU the suite refuses
to run, except with --quick. `--only LABEL` runs that training and the step it is estimated from: a second part in
what is left of a lease.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import side_by_side
from bench_data import mnist_folder, run
from seqvision.atomic import write_json_atomic

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "gpu_suite.json"
TRAIN_IMAGES = 54_000  # MNIST's training split after the 10% validation hold-out
STEP_MODELS = ("lstm", "stacked-lstm", "bilstm", "gru", "rnn", "cnn", "cnn-lstm", "renet")
PIXEL_MODELS = ("lstm", "gru", "rnn")
BATCH_SIZES = (128, 1024)
# The estimate of a training's time beyond its steps: Lightning's own work per step, the test pass after each
# epoch (off the training clock, not off the budget's), and the process's start (imports, reading MNIST).
LIGHTNING_STEP_SECONDS, TEST_PASS_SECONDS, START_SECONDS = 0.006, 1.0, 25.0


@dataclass(frozen=True)
class StepCase:
    """One row of the step table: a model, how it reads the image, and the batch size."""

    model: str
    scan: str
    batch_size: int
    explicit_cell: bool = False

    @property
    def label(self) -> str:
        cell = " (explicit cell)" if self.explicit_cell else ""
        return f"{self.model}{cell}, {self.scan}, batch {self.batch_size}"


@dataclass(frozen=True)
class Training:
    """One training of part 2: a side_by_side.py spec, its epochs, and the step it is estimated from."""

    label: str
    spec: str
    epochs: int
    step: StepCase
    precision: str  # what it trains in, so which of the step's two times estimates it: "32" or "bf16"
    share: float = 0.0  # > 0: train as many epochs (up to `epochs`) as fit in this share of the budget left
    follow_up: bool = False  # run only when named with --only


def step_cases(quick: bool) -> list[StepCase]:
    if quick:
        return [StepCase("lstm", "rows", 16), StepCase("lstm", "rows", 16, explicit_cell=True),
                StepCase("cnn", "rows", 16)]
    cases = [StepCase(model, "rows", size) for model in STEP_MODELS for size in BATCH_SIZES]
    cases += [StepCase("lstm", "rows", size, explicit_cell=True) for size in BATCH_SIZES]
    cases += [StepCase(model, "pixels", size) for model in PIXEL_MODELS for size in BATCH_SIZES]
    return [*cases, StepCase("lstm", "pixels", 128, explicit_cell=True)]


def trainings(quick: bool) -> list[Training]:
    rows, pixels = StepCase("lstm", "rows", 128), StepCase("lstm", "pixels", 128)
    if quick:
        return [Training("lstm defaults", "model=lstm", 1, StepCase("lstm", "rows", 16), "bf16")]
    return [
        Training("lstm defaults", "model=lstm", 10, rows, "32"),  # auto: float32 on a GPU since this suite
        Training("lstm, pixel by pixel (sequential MNIST), float32", "model=lstm,scan=pixels,precision=32", 30,
                 pixels, "32", share=0.5),
        Training("lstm, pixel by pixel, float32, lr 1e-3, Keras's initialisation (forget-gate bias 1)",
                 "model=lstm,scan=pixels,precision=32,lr=0.001,init=keras", 25, pixels, "32", follow_up=True),
        Training("lstm, batch 1024, lr 0.006 (2e-3 x sqrt 8)", "model=lstm,batch_size=1024,lr=0.006", 10,
                 StepCase("lstm", "rows", 1024), "32"),
        Training("cnn-lstm-mnist preset", "cnn-lstm-mnist", 12, StepCase("cnn-lstm", "rows", 128), "bf16"),
        Training("lstm, permuted pixels, float32", "model=lstm,scan=permuted-pixels,precision=32", 30, pixels, "32",
                 share=0.8),
    ]


def time_steps(case: StepCase, device: str, repeats: int, steps: int) -> dict[str, float]:
    """Median seconds per training step in float32 and under bf16 autocast, alternated."""
    import torch
    import torch.nn.functional as F

    from seqvision.config import TrainConfig
    from seqvision.models import build_model
    from seqvision.models.cells import ExplicitLSTM

    torch.manual_seed(0)
    model = build_model(TrainConfig(model=case.model, scan=case.scan), (28, 28), 10)
    if case.explicit_cell:
        model.rnn = ExplicitLSTM.like(model.rnn)
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.rand(case.batch_size, 28, 28, device=device)
    labels = torch.randint(0, 10, (case.batch_size,), device=device)

    def timed_steps(bf16: bool) -> float:
        synchronise(device)
        started = time.perf_counter()
        for _ in range(steps):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronise(device)
        return (time.perf_counter() - started) / steps

    for bf16 in (False, True):  # warm-up: cuDNN's plans, autocast's weight casts, the allocator's pools
        timed_steps(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for bf16 in (False, True):
            times[bf16].append(timed_steps(bf16))
    return {"32": statistics.median(times[False]), "bf16": statistics.median(times[True])}


def synchronise(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def describe_machine(device: str) -> dict[str, str]:
    import lightning
    import torch

    from seqvision import __version__

    gpu = torch.cuda.get_device_name() if device == "cuda" else "none"
    return {"date": date.today().isoformat(), "gpu": gpu, "cpu_threads": str(torch.get_num_threads()),
            "python": platform.python_version(), "torch": torch.__version__,
            "cudnn": str(torch.backends.cudnn.version()) if device == "cuda" else "-",
            "lightning": lightning.__version__, "seqvision": __version__}


def estimated_seconds(training: Training, step_seconds: float, epochs: int) -> float:
    from seqvision.config import TrainConfig, load_preset

    batch_size = side_by_side.config_from_spec(training.spec, TrainConfig, load_preset).batch_size
    steps_per_epoch = -(-TRAIN_IMAGES // batch_size)
    return epochs * (steps_per_epoch * (step_seconds + LIGHTNING_STEP_SECONDS) + TEST_PASS_SECONDS) + START_SECONDS


def planned_epochs(training: Training, step_seconds: float, left: float) -> tuple[int, float]:
    """The epochs to train and their estimated seconds, with 0 epochs where they do not fit in `left` seconds."""
    epochs = training.epochs
    if training.share:
        per_epoch = estimated_seconds(training, step_seconds, 2) - estimated_seconds(training, step_seconds, 1)
        epochs = min(epochs, int((left * training.share - START_SECONDS) // per_epoch))
    needed = estimated_seconds(training, step_seconds, max(epochs, 1))
    return (epochs if epochs >= 1 and needed <= left else 0), needed


def run_trainings(results: dict, chosen: list[Training], budget: float, started: float, quick: bool,
                  out: Path | None) -> None:
    steps = {row["label"]: row for row in results["steps"]}
    with tempfile.TemporaryDirectory(prefix="seqvision-gpu-suite-") as scratch:
        for training in chosen:
            left = budget - (time.perf_counter() - started)
            epochs, needed = planned_epochs(training, steps[training.step.label][f"step_seconds_{training.precision}"],
                                            left)
            if not epochs:
                print(f"== skipped {training.label}: about {needed:.0f} s needed, {left:.0f} s left", file=sys.stderr)
                results["skipped"].append({"label": training.label, "needed_seconds": needed, "left_seconds": left})
                save(results, out)
                continue
            print(f"== {training.label}: {epochs} epochs, about {needed:.0f} s", file=sys.stderr, flush=True)
            try:
                record = side_by_side.run_seqvision(training.spec, epochs, 3000 if quick else 0, Path(scratch))
            except subprocess.CalledProcessError as error:
                # One failed training must not cost the others their turn on a machine lent for minutes.
                print(f"== {training.label} failed with status {error.returncode}; its messages are above",
                      file=sys.stderr, flush=True)
                results["failed"].append({"label": training.label, "status": error.returncode})
                save(results, out)
                continue
            results["trainings"].append({"label": training.label, "spec": training.spec, "estimated_seconds": needed,
                                         **record})
            save(results, out)


def save(results: dict, out: Path | None) -> None:
    if out is not None:
        write_json_atomic(out, results)


def read_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        sys.exit(f"error: cannot read {path} as the suite's results ({error}); give a file that gpu_suite.py wrote "
                 "with --out.")
    if not isinstance(results, dict) or not {"machine", "steps", "trainings", "skipped", "failed"} <= results.keys():
        sys.exit(f"error: {path} is not a results file of gpu_suite.py; give a file that it wrote with --out.")
    return results


def tables(results: dict) -> str:
    machine = results["machine"]
    lines = [f"{machine['date']}, GPU: {machine['gpu']}; torch {machine['torch']}, cuDNN {machine['cudnn']}, "
             f"Lightning {machine['lightning']}, Python {machine['python']}, seqvision {machine['seqvision']}.", "",
             "| model, scan, batch | float32 step | bf16 autocast step | bf16 / float32 | images/s (faster) |",
             "| --- | --- | --- | --- | --- |"]
    for row in results["steps"]:
        fp32, bf16 = row["step_seconds_32"], row["step_seconds_bf16"]
        lines.append(f"| {row['label']} | {1000 * fp32:.2f} ms | {1000 * bf16:.2f} ms | {bf16 / fp32:.2f}x | "
                     f"{row['batch_size'] / min(fp32, bf16):,.0f} |")
    lines += ["", "| training | epochs | s/epoch | test accuracy, final | best epoch's checkpoint | 99.0% after | "
              "train() call, all in | peak RSS |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for record in results["trainings"]:
        per_epoch = record["train_seconds"][-1] / record["epochs"]
        lines.append(f"| {record['label']} | {record['epochs']} | {per_epoch:.1f} | "
                     f"{record['final_test_accuracy']:.2%} | {record['best_checkpoint_accuracy']:.2%} | "
                     f"{side_by_side.show(side_by_side.seconds_to(record, 0.99))} | "
                     f"{record['command_seconds']:.0f} s | {record['peak_rss_mib']:.0f} MiB |")
    lines += [f"| {skipped['label']} | skipped: about {skipped['needed_seconds']:.0f} s needed, "
              f"{skipped['left_seconds']:.0f} s left | | | | | | |" for skipped in results["skipped"]]
    lines += [f"| {failed['label']} | failed with status {failed['status']} | | | | | | |"
              for failed in results["failed"]]
    return "\n".join(lines)


def main() -> int | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole suite (default 480)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"the results file (default {RESULTS})")
    parser.add_argument("--quick", action="store_true", help="a few steps and one short training, on the CPU "
                        "where no GPU is visible; writes nothing")
    parser.add_argument("--only", action="append", metavar="LABEL", help="only this training (repeat for several), "
                        "with the steps it is estimated from: a second part in a short lease")
    parser.add_argument("--report", nargs="*", type=Path, metavar="FILE", help="measure nothing: the tables of "
                        f"these results files (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args()
    if args.report is not None:
        print("\n\n".join(tables(read_results(path)) for path in args.report or [RESULTS]))
        return None
    if args.budget <= 0:
        sys.exit("error: --budget must be a number of seconds above 0.")
    chosen = [t for t in trainings(args.quick) if (t.label in args.only if args.only else not t.follow_up)]
    if not chosen:
        sys.exit(f"error: no training matches --only; labels: {'; '.join(t.label for t in trainings(args.quick))}.")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.quick:
        sys.exit("error: no CUDA GPU is visible, and this suite measures one. For the CPU's figures run "
                 "benchmarks/model_speed.py and benchmarks/frontier.py; --quick checks this suite on the CPU.")
    mnist_folder()
    started = time.perf_counter()
    out = None if args.quick else args.out
    results: dict = {"machine": describe_machine(device), "steps": [], "trainings": [], "skipped": [], "failed": []}
    # With --only, just the steps those trainings are estimated from.
    cases = list(dict.fromkeys(t.step for t in chosen)) if args.only else step_cases(args.quick)
    for case in cases:
        # A pixel-by-pixel step is 28 times as long as a row step: fewer timings make the same error.
        short = args.quick or case.scan == "pixels"
        seconds = time_steps(case, device, repeats=3 if short else 5, steps=3 if short else 10)
        results["steps"].append({"label": case.label, "model": case.model, "scan": case.scan,
                                 "batch_size": case.batch_size, "explicit_cell": case.explicit_cell,
                                 "step_seconds_32": seconds["32"], "step_seconds_bf16": seconds["bf16"]})
        print(f"{case.label}: {1000 * seconds['32']:.2f} ms float32, {1000 * seconds['bf16']:.2f} ms bf16",
              file=sys.stderr, flush=True)
        save(results, out)
    run_trainings(results, chosen, args.budget, started, args.quick, out)
    print(tables(results))
    return None


if __name__ == "__main__":
    run(main)
