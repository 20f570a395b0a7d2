"""Training-step time and inference throughput of every registered model, on random 28x28 inputs.

    .venv/bin/python benchmarks/model_speed.py [--batch-size 128] [--scan rows] [--bf16] [MODEL ...]

No data or Lightning involved: forward, backward and an Adam step on one batch, timed over repeated
steps after warm-up, then inference on batches of 1000. With --bf16 the training step is also timed under
bfloat16 autocast, alternating with the float32 steps, with the ratio of the two: what `--precision auto`
weighs for each model. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bench_data import run
from seqvision.config import TrainConfig
from seqvision.models import build_model, model_names

WARM_UP, TIMED = 3, 10


def median_seconds(step, repeats: int) -> float:
    for _ in range(WARM_UP):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure(name: str, batch_size: int, scan: str, bf16: bool) -> tuple[int, float, float, float | None]:
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=name, scan=scan), (28, 28), 10)
    optimizer = torch.optim.Adam(model.parameters())
    images, labels = torch.rand(batch_size, 28, 28), torch.randint(0, 10, (batch_size,))

    def train_step(autocast: bool = False) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    if bf16:
        # float32 and bf16 steps alternate, so that load from other work falls on both alike.
        times = {False: [], True: []}
        for round_number in range(WARM_UP + TIMED):
            for autocast in (False, True):
                started = time.perf_counter()
                train_step(autocast)
                if round_number >= WARM_UP:
                    times[autocast].append(time.perf_counter() - started)
        step, bf16_step = (sorted(times[autocast])[TIMED // 2] for autocast in (False, True))
    else:
        step, bf16_step = median_seconds(train_step, TIMED), None
    model.eval()
    test_batch = torch.rand(1000, 28, 28)
    with torch.inference_mode():
        infer = median_seconds(lambda: model(test_batch), 3)
    return sum(p.numel() for p in model.parameters()), step, 1000 / infer, bf16_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=None)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--scan", default="rows")
    parser.add_argument("--bf16", action="store_true", help="also time the training step under bf16 autocast")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, scan {args.scan}")
    extra = (" bf16 autocast step | bf16 / float32 |", " --- | --- |") if args.bf16 else ("", "")
    print(f"| model | parameters | training step | steps per 54k-image epoch | inference images/s |{extra[0]}")
    print(f"| --- | --- | --- | --- | --- |{extra[1]}")
    for name in args.models or model_names():
        count, step, throughput, bf16_step = measure(name, args.batch_size, args.scan, args.bf16)
        steps = -(-54_000 // args.batch_size)
        bf16_cells = f" {1000 * bf16_step:.1f} ms | {bf16_step / step:.2f}x |" if bf16_step is not None else ""
        print(f"| `{name}` | {count:,} | {1000 * step:.1f} ms | {steps} steps = {steps * step:.0f} s | "
              f"{throughput:,.0f} |{bf16_cells}", flush=True)


if __name__ == "__main__":
    run(main)
