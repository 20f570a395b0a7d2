"""How close a training step comes to this CPU's arithmetic limit: achieved FLOP rate over measured matmul peak.

    .venv/bin/python benchmarks/arithmetic_rate.py [--threads N] [--clock wall|cpu] [--repeats 20]
                                                   [--peak-sizes 1024 2048 4096] [--peak-repeats 5]

The peak is the best rate of square matrix products (2 n^3 FLOPs each) in float32 and in bfloat16, on
torch's threads. The work of a training step is the FLOPs of one forward and backward pass at batch 128,
counted by torch.utils.flop_counter.FlopCounterMode: matrix products and convolutions, nearly all of the
arithmetic (activations, pooling, dropout and the loss are left out). The LSTMs' FLOPs come from a formula
instead, `lstm_flops`: the counter misses nn.LSTM's fused oneDNN kernel and the explicit cell's in-place
products. The script checks the formula against the counter on nn.LSTM with oneDNN off.

The achieved rate is those FLOPs over the median time of a whole step (forward, backward, fused AdamW, as in
step_variants.py), in float32 and under bf16 autocast (float32 weights and optimiser), compared with the peak
of the same precision. AdamW's own step is timed alone too: its element-wise work is not counted, so the share
of its time is what it costs the rate. `--threads 1 --clock cpu` measures CPU time on one thread instead, for a
machine that other processes keep busy.

Rows: the default `lstm` (nn.LSTM), the default `cnn`, and the model of the seed-000-lstm preset (the explicit
cell with sigmoid), all at batch 128 with fused AdamW, whatever optimiser and batch size the preset trains with.
All timings run interleaved, round by round in one process, so that load from other processes falls on every
variant alike. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench_data import run
from seqvision.config import TrainConfig, load_preset
from seqvision.models import build_model
from seqvision.models.cells import ExplicitLSTM

BATCH = 128
IMAGE = (28, 28)
CLASSES = 10
PRECISIONS = {"float32": torch.float32, "bf16 autocast": torch.bfloat16}
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


@dataclass
class TrainingStep:
    """One model, its fused AdamW and one fixed batch of random images: the step that gets counted and timed."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    images: torch.Tensor
    labels: torch.Tensor
    bf16: bool

    @classmethod
    def build(cls, config: TrainConfig, bf16: bool) -> TrainingStep:
        torch.manual_seed(0)
        model = build_model(config, IMAGE, CLASSES)
        optimizer = torch.optim.AdamW(model.parameters(), fused=True)
        return cls(model, optimizer, torch.rand(BATCH, *IMAGE), torch.randint(0, CLASSES, (BATCH,)), bf16)

    def forward_backward(self) -> None:
        self.optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            # images (B, 28, 28) -> logits (B, 10) -> loss ()
            loss = F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()

    def __call__(self) -> None:
        self.forward_backward()
        self.optimizer.step()


def lstm_flops(batch: int, steps: int, inputs: int, hidden: int, input_needs_grad: bool) -> int:
    """FLOPs (two per multiply-add) of the matrix products of one LSTM layer and direction over a sequence from
    a zero state, forward and backward: the gate products 2*B*T*(I+H)*4H forward, as many again for the weight
    gradients, the recurrent products for the hidden state's gradient (none into the zero initial state), and
    the input's gradient only when the input needs one. About three times the forward pass."""
    gates = 4 * hidden
    forward = 2 * batch * steps * (inputs + hidden) * gates
    hidden_grad = 2 * batch * (steps - 1) * hidden * gates
    input_grad = 2 * batch * steps * inputs * gates if input_needs_grad else 0
    return 2 * forward + hidden_grad + input_grad


def stacked_lstm_flops(lstm: nn.LSTM | ExplicitLSTM, sequences: torch.Tensor) -> int:
    """`lstm_flops` summed over the layers and directions of a batch-first LSTM run on `sequences` (B, T, F)."""
    batch, steps, _ = sequences.shape
    directions = 2 if getattr(lstm, "bidirectional", False) else 1
    total = 0
    for layer in range(lstm.num_layers):
        inputs = lstm.input_size if layer == 0 else lstm.hidden_size * directions
        needs_grad = sequences.requires_grad if layer == 0 else True
        total += directions * lstm_flops(batch, steps, inputs, lstm.hidden_size, needs_grad)
    return total


def step_flops(step: TrainingStep) -> int:
    """FLOPs of one forward and backward pass: the counter's outside the LSTMs, `stacked_lstm_flops` inside them.

    The counter does not know oneDNN's fused RNN kernel, which nn.LSTM runs on the CPU, nor in-place products
    such as `addmm_`, which the explicit cell uses; the formula also gives both implementations the same work."""
    if any(isinstance(module, (nn.GRU, nn.RNN)) for module in step.model.modules()):
        raise NotImplementedError("the formula covers LSTMs only; nn.GRU and nn.RNN would go uncounted")
    lstms = {name: module for name, module in step.model.named_modules()
             if isinstance(module, (nn.LSTM, ExplicitLSTM))}
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(name: str) -> Callable[..., None]:
        def hook(_: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            inputs[name] = args[0]
        return hook

    hooks = [module.register_forward_pre_hook(keep_input(name)) for name, module in lstms.items()]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            step.forward_backward()
    finally:
        for hook in hooks:
            hook.remove()
    by_module = counter.get_flop_counts()
    counted_in_lstms = sum(sum(by_module.get(f"{type(step.model).__name__}.{name}", {}).values()) for name in lstms)
    formula = sum(stacked_lstm_flops(module, inputs[name]) for name, module in lstms.items())
    return counter.get_total_flops() - counted_in_lstms + formula


def check_lstm_formula() -> tuple[int, int]:
    """(formula, counter) FLOPs of nn.LSTM's forward and backward at the default LSTM's shapes with oneDNN off:
    ATen's own loop then makes the products through ordinary matrix multiplications, which the counter sees."""
    torch.manual_seed(0)
    lstm = nn.LSTM(IMAGE[1], 128, batch_first=True)
    sequences = torch.rand(BATCH, IMAGE[0], IMAGE[1])
    counter = FlopCounterMode(display=False)
    torch.backends.mkldnn.enabled = False
    try:
        with counter:
            lstm(sequences)[0][:, -1].sum().backward()
    finally:
        torch.backends.mkldnn.enabled = True
    return stacked_lstm_flops(lstm, sequences), counter.get_total_flops()


def dtype_name(dtype: torch.dtype) -> str:
    """`float32` for torch.float32."""
    return str(dtype).removeprefix("torch.")


def matmul(size: int, dtype: torch.dtype) -> Callable[[], None]:
    left, right = torch.rand(size, size).to(dtype), torch.rand(size, size).to(dtype)
    return lambda: torch.mm(left, right)


def interleaved_seconds(schedule: dict[str, tuple[Callable[[], None], int]], clock: Callable[[], float]
                        ) -> dict[str, list[float]]:
    """Seconds of each call by `clock`, one call of every entry per round, each entry for its own number of
    rounds; every entry runs once first, untimed, as warm-up."""
    for call, _ in schedule.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in schedule}
    for round_ in range(max(count for _, count in schedule.values())):
        for name, (call, count) in schedule.items():
            if round_ < count:
                started = clock()
                call()
                times[name].append(clock() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20, help="timed training steps per row (median)")
    parser.add_argument("--peak-sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--peak-repeats", type=int, default=5, help="timed products per size (best)")
    parser.add_argument("--clock", choices=CLOCKS, default="wall",
                        help="cpu: this process's CPU time, which other processes do not inflate; with --threads 1 "
                             "only, since it adds up the time of every thread, waiting ones included")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1")
    torch.set_num_threads(args.threads)

    models = {"lstm": TrainConfig(model="lstm"), "cnn": TrainConfig(model="cnn"),
              "seed-000-lstm (explicit cell)": load_preset("seed-000-lstm")}
    steps = {(model, precision): TrainingStep.build(config, dtype == torch.bfloat16)
             for model, config in models.items() for precision, dtype in PRECISIONS.items()}
    flops = {key: step_flops(step) for key, step in steps.items()}
    schedule = {f"step {key}": (step, args.repeats) for key, step in steps.items()}
    schedule |= {f"adamw {model}": (steps[model, "float32"].optimizer.step, args.repeats) for model in models}
    schedule |= {f"mm {size} {precision}": (matmul(size, dtype), args.peak_repeats)
                 for size in args.peak_sizes for precision, dtype in PRECISIONS.items()}
    times = interleaved_seconds(schedule, CLOCKS[args.clock])

    peaks = {precision: max(2 * size**3 / min(times[f"mm {size} {precision}"]) / 1e9 for size in args.peak_sizes)
             for precision in PRECISIONS}
    machine = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}; batch {BATCH}; median of "
          f"{args.repeats} interleaved training steps (forward, backward, fused AdamW); {args.clock} clock\n")
    print("| model | precision | GFLOP per step | ms per step | of which AdamW ms | GFLOP/s | fraction of peak |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (model, precision), step_flop_count in flops.items():
        seconds = statistics.median(times[f"step {(model, precision)}"])
        adamw = statistics.median(times[f"adamw {model}"])
        rate = step_flop_count / seconds / 1e9
        print(f"| {model} | {precision} | {step_flop_count / 1e9:.3f} | {1000 * seconds:.1f} | {1000 * adamw:.1f} "
              f"| {rate:.1f} | {rate / peaks[precision]:.1%} |")
    per_size = ", ".join(f"{dtype_name(dtype)} n={size}: {2 * size**3 / min(times[f'mm {size} {precision}']) / 1e9:.0f}"
                         for precision, dtype in PRECISIONS.items() for size in args.peak_sizes)
    print(f"\nMatmul peak (best of {args.peak_repeats}): float32 {peaks['float32']:.0f} GFLOP/s, bfloat16 "
          f"{peaks['bf16 autocast']:.0f} GFLOP/s ({per_size}).")
    formula, counted = check_lstm_formula()
    print(f"LSTMs counted by formula: {formula / 1e9:.4f} GFLOP for nn.LSTM at the lstm's shapes, where "
          f"FlopCounterMode counts {counted / 1e9:.4f} with oneDNN off. AdamW's element-wise FLOPs are not counted.")


if __name__ == "__main__":
    run(main)
