"""One model's training step under the speed-ups this CPU offers, side by side in one process.

    .venv/bin/python benchmarks/step_variants.py [--model cnn] [--batch-size 64 128] [--repeats 20] [--profile]

Forward, backward and an AdamW step on one batch of random 28x28 images, timed (median) for: AdamW's
default for-loop implementation, the fused one seqvision uses, fused with channels-last memory, fused with
bfloat16 autocast (the weights and AdamW stay float32), with and without channels-last, and the model under
`torch.compile` (inductor, which generates C++ for the CPU) in float32 and bf16. The first step of each variant
is timed on its own: for the compiled ones it holds the compilation. Prints a Markdown table for
docs/benchmarks.md. Only the step is timed: whether bf16 keeps the accuracy is a separate question.
`--profile` prints instead where the for-loop AdamW step's time goes (torch.profiler, the first batch size).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from bench_data import run
from model_speed import median_seconds  # this folder is on sys.path when a benchmark runs
from seqvision.config import TrainConfig
from seqvision.models import build_model

VARIANTS = (  # (name, fused AdamW, channels-last, bf16 autocast, torch.compile)
    ("AdamW for-loop, float32", False, False, False, False),
    ("AdamW fused, float32", True, False, False, False),
    ("fused, channels-last, float32", True, True, False, False),
    ("fused, bf16 autocast", True, False, True, False),
    ("fused, channels-last, bf16 autocast", True, True, True, False),
    ("fused, torch.compile, float32", True, False, False, True),
    ("fused, torch.compile, bf16 autocast", True, False, True, True),
)


def training_step(model_name: str, batch_size: int, fused: bool, channels_last: bool, bf16: bool,
                  compiled: bool = False) -> Callable[[], None]:
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=model_name), (28, 28), 10)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), fused=fused)
    images, labels = torch.rand(batch_size, 28, 28), torch.randint(0, 10, (batch_size,))

    def train_step() -> None:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    return train_step


def profile(step: Callable[[], None], repeats: int) -> None:
    from torch.profiler import profile as torch_profile

    step()
    with torch_profile() as profiler:
        for _ in range(repeats):
            step()
    table = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in table)
    optimizer = sum(event.cpu_time_total for event in table if event.key.startswith("Optimizer.step"))
    print(table.table(sort_by="self_cpu_time_total", row_limit=12))
    print(f"optimizer step: {100 * optimizer / total:.0f}% of the training step's CPU time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="profile the for-loop AdamW step instead")
    args = parser.parse_args()
    if args.profile:
        profile(training_step(args.model, args.batch_size[0], False, False, False), args.repeats)
        return
    machine = platform.processor() or platform.machine()
    print(f"{args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}; median of "
          f"{args.repeats} training steps\n")
    print("| batch | variant | first step s | ms per step | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for batch_size in args.batch_size:
        baseline = None
        for name, *options in VARIANTS:
            step = training_step(args.model, batch_size, *options)
            started = time.perf_counter()
            step()
            first = time.perf_counter() - started
            ms = 1000 * median_seconds(step, args.repeats)
            baseline = baseline or ms
            print(f"| {batch_size} | {name} | {first:.2f} | {ms:.1f} | {baseline / ms:.2f}x |", flush=True)


if __name__ == "__main__":
    run(main)
