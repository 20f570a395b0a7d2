"""The explicit LSTM's training step against `nn.LSTM` at the same shapes, side by side in one process.

    .venv/bin/python benchmarks/explicit_cell.py [--batch-size 64] [--hidden 128] [--repeats 50]

Forward and backward of one batch of 28 steps of 28 features (seed 000's shapes), timed three ways:
the fused `nn.LSTM` (oneDNN on the CPU), the explicit cell's training path (`LSTMSequence`, the gradient
written out by hand), and autograd through the readable step-by-step cells (the training path before
`LSTMSequence` existed, still used for traces). Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable

import torch
from torch import nn

from model_speed import median_seconds  # this folder is on sys.path when a benchmark runs
from seqvision.models.cells import ExplicitLSTM

STEPS = FEATURES = 28


def training_step(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        forward(images)[:, -1].sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randn(args.batch_size, STEPS, FEATURES)
    fused = nn.LSTM(FEATURES, args.hidden, batch_first=True)
    reference = 1000 * median_seconds(training_step(lambda x: fused(x)[0], images), args.repeats)
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}; "
          f"batch {args.batch_size}, {STEPS} steps x {FEATURES} features, hidden {args.hidden}; median of "
          f"{args.repeats} forward+backward steps\n")
    print("| LSTM | activation | ms per step | x nn.LSTM |")
    print("| --- | --- | --- | --- |")
    print(f"| nn.LSTM (fused) | tanh | {reference:.2f} | 1.00 |")
    for activation in ("tanh", "sigmoid"):
        explicit = ExplicitLSTM.like(fused, activation=activation)
        rows = (("explicit, hand-written backward", lambda x, e=explicit: e(x)[0]),
                ("explicit, autograd through the cells", lambda x, e=explicit: e.trace(x).hidden))
        for name, forward in rows:
            ms = 1000 * median_seconds(training_step(forward, images), args.repeats)
            print(f"| {name} | {activation} | {ms:.2f} | {ms / reference:.2f} |")
    where_the_forward_time_goes(fused, images, args.repeats)


def where_the_forward_time_goes(fused: nn.LSTM, images: torch.Tensor, repeats: int) -> None:
    """The forward pass alone: nn.LSTM with oneDNN's fused RNN and with ATen's own loop, the explicit training
    path, and the one recurrent matrix product every step of a Python loop has to make."""
    explicit = ExplicitLSTM.like(fused, activation="sigmoid")
    hidden = torch.randn(images.shape[0], fused.hidden_size)
    recurrent, projected = fused.weight_hh_l0.detach().t(), torch.randn(images.shape[0], 4 * fused.hidden_size)
    with torch.no_grad():
        onednn = 1000 * median_seconds(lambda: fused(images), repeats)
        torch.backends.mkldnn.enabled = False
        aten_loop = 1000 * median_seconds(lambda: fused(images), repeats)
        torch.backends.mkldnn.enabled = True
        step_product = 1e6 * median_seconds(lambda: torch.addmm(projected, hidden, recurrent), 20 * repeats)
    explicit_forward = 1000 * median_seconds(lambda: explicit(images), repeats)
    print("\n| forward pass only | ms |")
    print("| --- | --- |")
    print(f"| nn.LSTM, oneDNN's fused RNN | {onednn:.2f} |")
    print(f"| nn.LSTM, oneDNN off (ATen's C++ loop) | {aten_loop:.2f} |")
    print(f"| explicit, training path (sigmoid) | {explicit_forward:.2f} |")
    print(f"\nOne step's recurrent product ({images.shape[0]}x{fused.hidden_size} by {fused.hidden_size}x"
          f"{4 * fused.hidden_size}) alone: {step_product:.1f} us, x {images.shape[1]} steps = "
          f"{step_product * images.shape[1] / 1000:.2f} ms.")


if __name__ == "__main__":
    main()
