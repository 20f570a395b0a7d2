"""Where an epoch's time goes: batching alone, a bare PyTorch loop, seqvision's Lightning epoch, and the tutorial
data pattern, all on the same model, configuration and batches, as ratios measured in one run.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/epoch_speed.py [--model lstm] [--batch-size 128]
        [--config PRESET] [--hidden N] [--rounds 2] [--threads N] [--workers 0 2] [--train-limit N]
        [--profile]

Stages, each one epoch over the run's training batches plus one pass over its validation batches:

- batching only: iterate the in-memory training batches (gather + normalise), no model;
- bare loop: forward, cross-entropy, backward, clipping (when the config clips) and the optimiser seqvision
  builds, then a validation pass under inference mode, written as a PyTorch tutorial would;
- seqvision epoch: `train_model` for one epoch, timed from Lightning's on_train_epoch_start to on_train_end, so
  it holds what a user waits for: the steps, the validation pass, then the history row and the checkpoints as
  seqvision writes them, and curves.png when the epoch took over EpochHistory.REDRAW_SECONDS; the overhead is
  this over the bare loop, minus one. It runs as output to a file or pipe does, without a progress bar;
- tutorial pattern: the bare loop fed by a torch.utils.data.Dataset that returns one normalised image and its
  label per __getitem__, through DataLoader(batch_size, shuffle=True) with each --workers count.

After an untimed warm-up epoch, the stages run interleaved for --rounds rounds and the table shows each stage's
median; a fresh model and optimiser are built for every epoch, seeded as seqvision seeds them. CPU seconds are
this process's only, so they leave out DataLoader workers. A small --hidden (e.g. 8) makes the steps short, so
that the per-step cost of the framework stands out. `--profile` instead prints cProfile's top functions
of one seqvision epoch. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from bench_data import require_dataset, run
from seqvision.config import TrainConfig, load_preset
from seqvision.data import load_dataset
from seqvision.data.batches import RunBatches, split_batches
from seqvision.models import build_model, resolve_model_options
from seqvision.runs.history import read_history
from seqvision.training.optim import build_optimizer
from seqvision.training.train import resolve_precision, train_model

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds."""

    wall: float
    cpu: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu)


PHASES = ("steps", "validation", "epoch end")


class PhaseClock:
    """Seconds between successive marks, by the name of the phase each mark ends."""

    def __init__(self) -> None:
        self.phases: dict[str, Timing] = {}
        self.start()

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def mark(self, phase: str) -> None:
        self.phases[phase] = Timing(time.perf_counter() - self._wall, time.process_time() - self._cpu)
        self.start()

    @staticmethod
    def sum_of(phases: dict[str, Timing]) -> Timing:
        return sum(phases.values(), Timing(0.0, 0.0))


class SampleDataset(Dataset):
    """The tutorial pattern: one normalised float image and its label per __getitem__."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean: float, std: float) -> None:
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = (torch.from_numpy(self.images[index]).float() / 255.0 - self.mean) / self.std
        return image, int(self.labels[index])


class EpochClock(L.Callback):
    """The seconds a user waits for one epoch, from its first training batch until training ends: the steps, the
    validation pass, then the epoch's end (history.csv, curves.png, the checkpoints)."""

    def __init__(self) -> None:
        self.clock = PhaseClock()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.start()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.mark("steps")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.mark("validation")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.clock.mark("epoch end")


class Bench:
    """The stages of one configuration, each a function that runs one epoch and returns its phases' seconds."""

    def __init__(self, config: TrainConfig, batches: RunBatches, image_shape: tuple[int, ...], classes: int) -> None:
        self.config, self.batches, self.image_shape, self.classes = config, batches, image_shape, classes
        self.lightning_history: list[float] = []

    def fresh_model(self) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(self.config.seed)
        model = build_model(self.config, self.image_shape, self.classes)
        if self.config.memory_format == "channels-last":  # as train_model lays out a preset's convolutions
            model = model.to(memory_format=torch.channels_last)
        return model, build_optimizer(self.config, model.parameters())

    def batching_only(self) -> dict[str, Timing]:
        clock = PhaseClock()
        for _ in self.batches.train:
            pass
        clock.mark("steps")
        return clock.phases

    def autocast(self) -> torch.autocast:
        """The bfloat16 autocast that Lightning's bf16-mixed puts around training and validation steps."""
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.precision == "bf16")

    def bare_loop(self, train: Batches | None = None, val: Batches | None = None) -> dict[str, Timing]:
        model, optimizer = self.fresh_model()
        clock = PhaseClock()
        model.train()
        for images, labels in self.batches.train if train is None else train:
            with self.autocast():
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_grad)
            optimizer.step()
        clock.mark("steps")
        model.eval()
        with torch.inference_mode(), self.autocast():
            for images, labels in self.batches.val if val is None else val:
                logits = model(images)
                F.cross_entropy(logits, labels)
                (logits.argmax(dim=1) == labels).float().mean()
        clock.mark("validation")
        return clock.phases

    def tutorial(self, workers: int) -> dict[str, Timing]:
        train, val, norm = self.batches.train, self.batches.val, self.batches.normalisation
        loader = DataLoader(SampleDataset(train.images.numpy(), train.labels.numpy(), norm.mean, norm.std),
                            batch_size=self.config.batch_size, shuffle=True, num_workers=workers,
                            generator=torch.Generator().manual_seed(self.config.seed))
        val_loader = DataLoader(SampleDataset(val.images.numpy(), val.labels.numpy(), norm.mean, norm.std),
                                batch_size=val.batch_size, num_workers=workers)
        return self.bare_loop(loader, val_loader)

    def warm_up(self) -> None:
        """One seqvision epoch of two batches, untimed: the imports and first-use costs (matplotlib, Lightning's
        loops) that a run pays once, not every epoch, stay out of the timed epochs."""
        config = self.config
        self.config = dataclasses.replace(config, train_limit=2 * config.batch_size)
        self.seqvision_epoch()
        self.config = config
        self.lightning_history.clear()

    def seqvision_epoch(self) -> dict[str, Timing]:
        timer = EpochClock()
        with tempfile.TemporaryDirectory() as folder:
            trained = train_model(self.config, out=Path(folder) / "run", progress=False, callbacks=[timer])
            self.lightning_history.append(float(read_history(trained.run.history_path)[-1]["seconds"]))
        return timer.clock.phases

    def deterministic_bare_loop(self) -> dict[str, Timing]:
        """The bare loop in the deterministic mode seqvision trains in (Lightning's `deterministic=True` without its
        NaN fill of new memory), to tell that mode's cost from the framework's."""
        enabled = torch.are_deterministic_algorithms_enabled()
        fill = torch.utils.deterministic.fill_uninitialized_memory
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = False
        try:
            return self.bare_loop()
        finally:
            torch.use_deterministic_algorithms(enabled)
            torch.utils.deterministic.fill_uninitialized_memory = fill

    def epoch_of(self, model: str, precision: str) -> dict[str, Timing]:
        """A seqvision epoch of another model at its own default size, on the same batches and settings, in
        `precision`."""
        config = self.config
        self.config = dataclasses.replace(other_model(config, model), precision=precision)
        try:
            return self.seqvision_epoch()
        finally:
            self.config = config
            self.lightning_history.pop()


def median(timings: list[Timing]) -> Timing:
    return Timing(statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings))


def print_table(results: dict[str, list[dict[str, Timing]]], bench: Bench, steps: int) -> None:
    totals = {name: median([PhaseClock.sum_of(epoch) for epoch in epochs]) for name, epochs in results.items()}
    bare = totals["bare"]
    print("| stage | seconds | CPU seconds | ms per step | steps, validation, epoch end (s) | "
          "steps, validation, epoch end (CPU s) | x bare loop | x bare loop, CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, epochs in results.items():
        total = totals[name]
        phases = {clock: ", ".join(f"{getattr(median([epoch[phase] for epoch in epochs]), clock):.2f}"
                                   if phase in epochs[0] else "-" for phase in PHASES) for clock in ("wall", "cpu")}
        print(f"| {STAGE_NAMES.get(name, name)} | {total.wall:.2f} | {total.cpu:.2f} | "
              f"{1000 * total.wall / steps:.1f} | {phases['wall']} | {phases['cpu']} | {total.wall / bare.wall:.3f} | "
              f"{total.cpu / bare.cpu:.3f} |")
    lightning = totals["seqvision"]
    print(f"\nframework overhead (seqvision epoch / bare loop - 1): "
          f"wall {100 * (lightning.wall / bare.wall - 1):+.1f}%, CPU {100 * (lightning.cpu / bare.cpu - 1):+.1f}%")
    # The two stages of one round ran a few seconds apart, so their ratio is less exposed to the machine's
    # drift over minutes than the ratio of the medians above.
    paired = [100 * (PhaseClock.sum_of(ours).wall / PhaseClock.sum_of(theirs).wall - 1)
              for ours, theirs in zip(results["seqvision"], results["bare"], strict=True)]
    print(f"the same, round by round (wall): {', '.join(f'{p:+.1f}%' for p in paired)}; "
          f"median {statistics.median(paired):+.1f}%")
    for name in totals:
        if name.startswith("seqvision epoch of "):
            other = totals[name]
            print(f"{name.removeprefix('seqvision epoch of ')} epoch / {bench.config.model} epoch: wall "
                  f"{other.wall / lightning.wall:.3f}x, CPU {other.cpu / lightning.cpu:.3f}x")
    print(f"history.csv seconds of the seqvision epochs: {', '.join(f'{s:.2f}' for s in bench.lightning_history)}")
    print("every repeat (wall s): " + "; ".join(
        f"{name} " + " ".join(f"{PhaseClock.sum_of(epoch).wall:.2f}" for epoch in epochs)
        for name, epochs in results.items()))


STAGE_NAMES = {
    "batching": "batching only (gather + normalise)",
    "bare": "bare PyTorch loop (train steps + validation pass)",
    "seqvision": "seqvision epoch (Lightning: steps, validation, history, checkpoints)",
    "deterministic": "bare PyTorch loop in deterministic mode (no NaN fill)",
}


def profile_epoch(bench: Bench) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(bench.seqvision_epoch)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def other_model(config: TrainConfig, model: str) -> TrainConfig:
    """`config` with another model at that model's default size."""
    return resolve_model_options(dataclasses.replace(config, model=model, hidden=None, layers=None,
                                                     dropout=None).validate())


def build_config(args: argparse.Namespace) -> TrainConfig:
    """The configuration as asked for, its precision not yet resolved (`auto` stays `auto`)."""
    config = load_preset(args.config) if args.config else TrainConfig()
    chosen = {name: value for name, value in (("model", args.model), ("batch_size", args.batch_size),
                                              ("hidden", args.hidden), ("train_limit", args.train_limit))
              if value is not None}
    return resolve_model_options(dataclasses.replace(config, epochs=1, **chosen).validate())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="default: the preset's, or lstm")
    parser.add_argument("--batch-size", type=int, help="default: the preset's, or 128")
    parser.add_argument("--config", help="a preset name or config file, e.g. seed-000-lstm")
    parser.add_argument("--hidden", type=int, help="recurrent hidden units; default: the preset's, or the model's")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repeats of every stage")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads; default: PyTorch's")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 2], help="DataLoader workers to try")
    parser.add_argument("--train-limit", type=int, help="train on the first N images only, for a quick check")
    parser.add_argument("--deterministic", action="store_true",
                        help="also time the bare loop in the deterministic mode seqvision trains in")
    parser.add_argument("--versus", metavar="MODEL", help="also time a seqvision epoch of this model (at its "
                                                           "default size and precision), e.g. --model lstm "
                                                           "--versus gru")
    parser.add_argument("--profile", action="store_true", help="cProfile one seqvision epoch instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    asked = build_config(args)
    # The bare loop runs in the precision seqvision's epoch resolves `auto` to on this CPU.
    config = dataclasses.replace(asked, precision=resolve_precision(asked, "cpu"))
    require_dataset(config.dataset, config.data_dir)
    splits = load_dataset(config.dataset, config.data_dir, config)
    bench = Bench(config, split_batches(config, splits), splits.image_shape, splits.num_classes)
    if args.profile:
        profile_epoch(bench)
        return
    stages: dict[str, Callable[[], dict[str, Timing]]] = {"batching": bench.batching_only, "bare": bench.bare_loop,
                                               "seqvision": bench.seqvision_epoch}
    if args.deterministic:
        stages["deterministic"] = bench.deterministic_bare_loop
    versus_precision = None
    if args.versus:
        # Each model in the precision `auto` gives it (or both in the one a preset sets): the defaults against each
        # other.
        versus_precision = resolve_precision(other_model(asked, args.versus), "cpu")
        stages[f"seqvision epoch of {args.versus}"] = lambda: bench.epoch_of(args.versus, versus_precision)
    for workers in args.workers:
        stages[f"tutorial pattern: Dataset + DataLoader, {workers} workers"] = lambda w=workers: bench.tutorial(w)
    bench.warm_up()
    results: dict[str, list[dict[str, Timing]]] = {name: [] for name in stages}
    for _ in range(args.rounds):
        for name, stage in stages.items():
            results[name].append(stage())
    steps = len(bench.batches.train)
    print(f"{steps} training steps of {config.batch_size} and {len(bench.batches.val)} validation batches, model "
          f"{config.model} in precision {config.precision}"
          f"{f' ({args.versus} in {versus_precision})' if args.versus else ''}, config {args.config or 'default'}, "
          f"{torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, Lightning {L.__version__}, median of {args.rounds} interleaved rounds\n")
    print_table(results, bench, steps)


if __name__ == "__main__":
    run(main)
