"""The `gru` model's training step and inference with `nn.GRU` and with seqvision's GRU, beside the `lstm` model.

    .venv/bin/python benchmarks/gru_speed.py [--batch-size 128] [--repeats 30] [--threads 1] [--clock cpu] [--bf16]

Each variant is the registry's default model on random 28x28 images (28 steps of 28 features, hidden 128): `lstm`
(nn.LSTM, oneDNN's fused RNN on the CPU), `gru` with a plain `nn.GRU` holding the same weights (the layer before
issue 11), and `gru` as built (`seqvision.models.gru_sequence.GRU`, whose training pass has a hand-written
backward, its loops compiled in float32), and the same with its Python loops. A training step is forward,
backward and a fused AdamW step; inference is one batch of 1,000 under inference_mode (seqvision's GRU runs its
compiled inference loop in float32, and nn.GRU's forward with the Python loops or under bf16). The variants run
interleaved, one step of each in turn, and each figure is the median over its repeats of the CPU time
(time.process_time), which other work on the machine inflates less than wall-clock time; with more than one
thread CPU time adds the threads up, so `--clock wall` times them on the wall clock instead (on a quiet machine).
`--bf16` adds each variant under bfloat16 autocast.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bench_data import run
from seqvision.config import TrainConfig
from seqvision.models import build_model
from seqvision.models.fused import python_loops


def with_plain_gru(model: nn.Module) -> nn.Module:
    """The model with its recurrent layer replaced by a plain `nn.GRU` holding the same weights."""
    layer = model.rnn
    plain = nn.GRU(layer.input_size, layer.hidden_size, num_layers=layer.num_layers, batch_first=layer.batch_first,
                   dropout=layer.dropout, bidirectional=layer.bidirectional)
    plain.load_state_dict(layer.state_dict())
    model.rnn = plain
    return model


def variant(name: str, plain_gru: bool, python: bool, batch_size: int, bf16: bool
            ) -> tuple[Callable[[], None], Callable[[], None]]:
    """A training step and an inference call for one variant, on fixed random batches."""
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=name), (28, 28), 10)
    if plain_gru:
        model = with_plain_gru(model)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    images, labels = torch.rand(batch_size, 28, 28), torch.randint(0, 10, (batch_size,))
    test_batch = torch.rand(1000, 28, 28)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad()
        with python_loops() if python else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
        optimizer.step()

    def infer() -> None:
        model.eval()
        loops = python_loops() if python else contextlib.nullcontext()
        with loops, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(test_batch)

    return train_step, infer


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


def milliseconds(call: Callable[[], None], clock: Callable[[], float]) -> float:
    started = clock()
    call()
    return 1000 * (clock() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="cpu")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [("lstm", "lstm", False, False), ("gru, plain nn.GRU", "gru", True, False),
            ("gru, seqvision GRU", "gru", False, False), ("gru, seqvision GRU, Python loops", "gru", False, True)]
    precisions = (False, True) if args.bf16 else (False,)
    variants = {(label, bf16): variant(name, plain, python, args.batch_size, bf16)
                for bf16 in precisions for label, name, plain, python in rows}
    for step, infer in variants.values():  # warm-up
        step(), step(), infer()
    times: dict[tuple[str, bool], tuple[list[float], list[float]]] = {key: ([], []) for key in variants}
    for repeat in range(args.repeats):
        for key, (step, infer) in variants.items():
            times[key][0].append(milliseconds(step, CLOCKS[args.clock]))
            if repeat % 3 == 0:
                times[key][1].append(milliseconds(infer, CLOCKS[args.clock]))
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}; "
          f"batch {args.batch_size}; median {args.clock} time of {args.repeats} interleaved steps\n")
    print("| model | precision | training step | x lstm | inference, 1,000 images |")
    print("| --- | --- | --- | --- | --- |")
    for (label, bf16), (steps, infers) in times.items():
        reference = median(times[("lstm", bf16)][0])
        print(f"| {label} | {'bf16 autocast' if bf16 else 'float32'} | {median(steps):.1f} ms | "
              f"{median(steps) / reference:.2f} | {median(infers):.1f} ms |")


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


if __name__ == "__main__":
    run(main)
