"""The explicit LSTM's training step against `nn.LSTM` at the same shapes, side by side in one process.

    .venv/bin/python benchmarks/explicit_cell.py [--batch-size 64] [--hidden 128] [--repeats 50] [--threads N]

Forward and backward of one batch of 28 steps of 28 features (seed 000's shapes), timed four ways, each in
float32 and under bfloat16 autocast: the fused `nn.LSTM` (oneDNN on the CPU), the explicit cell's training path
(`LSTMSequence`, the gradient written out by hand) with either activation, its loops compiled
(models/fused_rnn.cpp; float32 only: under autocast they run in float32, their bf16 row is the layer as autocast
trains it) or in Python (bf16 products under autocast), and autograd through
the readable step-by-step cells (the training path before `LSTMSequence` existed, still used for traces). The
rows take turns, one step each per round, so that load from other work on the machine falls on all of them alike;
each figure is a median over the rounds. With `--threads 1` it is CPU time, otherwise wall time. Prints Markdown
tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from bench_data import run
from seqvision.models.cells import ExplicitLSTM
from seqvision.models.fused import python_loops

STEPS = FEATURES = 28
WARM_UP = 3


def training_step(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                  bf16: bool) -> Callable[[], None]:
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(images)[:, -1].float().sum()
        loss.backward()

    return step


def interleaved_medians(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Seconds per call of each step, median over `repeats` rounds that call every step once in turn."""
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    for step in steps.values():
        for _ in range(WARM_UP):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            started = clock()
            step()
            times[name].append(clock() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def rows(fused: nn.LSTM) -> dict[tuple[str, str], Callable[[torch.Tensor], torch.Tensor]]:
    """Every LSTM the table compares, keyed by (name, activation), as a function from images to outputs."""
    forwards: dict[tuple[str, str], Callable[[torch.Tensor], torch.Tensor]] = {
        ("nn.LSTM (fused)", "tanh"): lambda x: fused(x)[0]}
    for activation in ("tanh", "sigmoid"):
        explicit = ExplicitLSTM.like(fused, activation=activation)
        forwards["explicit, hand-written backward, compiled loops", activation] = lambda x, e=explicit: e(x)[0]
        forwards["explicit, hand-written backward, Python loops", activation] = lambda x, e=explicit: python(e, x)
        forwards["explicit, autograd through the cells", activation] = lambda x, e=explicit: e.trace(x).hidden
    return forwards


def python(explicit: ExplicitLSTM, images: torch.Tensor) -> torch.Tensor:
    """The training path with its Python loops (the backward pass takes the loops its forward pass took)."""
    with python_loops():
        return explicit(images)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, STEPS, FEATURES)
    fused = nn.LSTM(FEATURES, args.hidden, batch_first=True)
    steps = {(name, activation, precision): training_step(forward, images, precision == "bf16")
             for (name, activation), forward in rows(fused).items() for precision in ("fp32", "bf16")}
    seconds = interleaved_medians(steps, args.repeats)
    machine = platform.processor() or platform.machine()
    clock = "CPU time" if args.threads == 1 else "wall time"
    print(f"torch {torch.__version__}, {args.threads} threads, {machine}; batch {args.batch_size}, {STEPS} steps x "
          f"{FEATURES} features, hidden {args.hidden}; median {clock} of {args.repeats} interleaved "
          "forward+backward steps\n")
    print("| LSTM | activation | precision | ms per step | x nn.LSTM float32 | x nn.LSTM same precision |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (name, activation, precision), value in seconds.items():
        reference = seconds["nn.LSTM (fused)", "tanh", precision]
        print(f"| {name} | {activation} | {precision} | {1000 * value:.2f} "
              f"| {value / seconds['nn.LSTM (fused)', 'tanh', 'fp32']:.2f} | {value / reference:.2f} |")
    where_the_forward_time_goes(fused, images, args.repeats)


def where_the_forward_time_goes(fused: nn.LSTM, images: torch.Tensor, repeats: int) -> None:
    """The forward pass alone, in float32: nn.LSTM with oneDNN's fused RNN and with ATen's own loop, the explicit
    training path, its inference path compiled and as readable cells, and the one recurrent matrix product every
    step of a Python loop has to make."""
    explicit = ExplicitLSTM.like(fused, activation="sigmoid")
    hidden = torch.randn(fused.hidden_size, images.shape[0])
    recurrent, projected = fused.weight_hh_l0.detach(), torch.randn(4 * fused.hidden_size, images.shape[0])

    def without_onednn() -> None:
        torch.backends.mkldnn.enabled = False
        try:
            with torch.no_grad():
                fused(images)
        finally:
            torch.backends.mkldnn.enabled = True

    def with_onednn() -> None:
        with torch.no_grad():
            fused(images)

    def compiled_inference() -> None:
        with torch.no_grad():  # the inference path: validation, test, predict
            explicit(images)

    def readable_cells() -> None:
        with torch.no_grad(), python_loops():  # inference without the compiled loops
            explicit(images)

    seconds = interleaved_medians({"onednn": with_onednn, "aten": without_onednn,
                                   "explicit": lambda: explicit(images), "inference": compiled_inference,
                                   "readable": readable_cells}, repeats)
    step_product = interleaved_medians({"product": lambda: torch.addmm(projected, recurrent, hidden)},
                                       20 * repeats)["product"]
    print("\n| forward pass only | ms |")
    print("| --- | --- |")
    print(f"| nn.LSTM, oneDNN's fused RNN | {1000 * seconds['onednn']:.2f} |")
    print(f"| nn.LSTM, oneDNN off (ATen's C++ loop) | {1000 * seconds['aten']:.2f} |")
    print(f"| explicit, training path (sigmoid), compiled loops | {1000 * seconds['explicit']:.2f} |")
    print(f"| explicit, inference without gradients (sigmoid), compiled loops | {1000 * seconds['inference']:.2f} |")
    print(f"| explicit, inference without gradients (sigmoid), readable cells | {1000 * seconds['readable']:.2f} |")
    print(f"\nOne step's recurrent product ({4 * fused.hidden_size}x{fused.hidden_size} by {fused.hidden_size}x"
          f"{images.shape[0]}, the explicit path's layout) alone: {1e6 * step_product:.1f} us, x {images.shape[1]} "
          f"steps = {1000 * step_product * images.shape[1]:.2f} ms.")


if __name__ == "__main__":
    run(main)
