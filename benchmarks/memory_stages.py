"""Where a training run's resident memory goes: VmRSS at each stage of one `seqvision train`, and the peak
within each stage, as a Markdown table.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/memory_stages.py --model lstm --dataset mnist \\
        --epochs 1 --out /tmp/memory-run

Any `seqvision train` option may follow, as for benchmarks/train_accuracy.py. The stages are the imports (torch,
Lightning, the rest of seqvision), then the run itself: loading the dataset, splitting it into batches,
building the model, Lightning's fit (its first batch, the rest of the epoch, validation, the epoch's history,
curves and checkpoints), the test pass and the report. A stage's peak comes from the kernel's high-water mark
(VmHWM), reset at the start of every stage through /proc/self/clear_refs, so a short spike inside a stage
counts. The last line is the whole run's peak, the figure train_accuracy.py reports as ru_maxrss. Linux only.
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_data import require_dataset, run, train_dataset

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_mib() -> dict[str, float]:
    """VmRSS (resident now), VmHWM (resident at most since the last reset), and RssAnon and RssFile, the part of
    VmRSS that is the process's own data and the part that is mapped files (mostly shared libraries' code), in MiB."""
    fields = {}
    for line in STATUS.read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) / 1024
    return fields


@dataclass
class Stage:
    name: str
    rss_before: float
    peak: float = 0.0
    rss_after: float = 0.0
    anon_after: float = 0.0
    file_after: float = 0.0
    seconds: float = 0.0


@dataclass
class Tracker:
    """Cuts the run into consecutive stages; `mark(name)` ends the current stage and starts the next."""

    stages: list[Stage] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def mark(self, name: str) -> None:
        now = status_mib()
        if self.stages:
            last = self.stages[-1]
            last.peak, last.rss_after = now["VmHWM"], now["VmRSS"]
            last.anon_after, last.file_after = now["RssAnon"], now["RssFile"]
            last.seconds = time.perf_counter() - self.started
        # Reset the high-water mark to the current RSS, so the next VmHWM read is this stage's own peak.
        CLEAR_REFS.write_text("5")
        self.started = time.perf_counter()
        self.stages.append(Stage(name, status_mib()["VmRSS"]))

    def finish(self) -> None:
        self.mark("(end)")
        self.stages.pop()

    def table(self) -> str:
        rows = ["| stage | VmRSS before | peak in stage | VmRSS after | of which data / files | seconds |",
                "| --- | --- | --- | --- | --- | --- |"]
        for stage in self.stages:
            rows.append(f"| {stage.name} | {stage.rss_before:.0f} MiB | {stage.peak:.0f} MiB | "
                        f"{stage.rss_after:.0f} MiB | {stage.anon_after:.0f} / {stage.file_after:.0f} MiB | "
                        f"{stage.seconds:.1f} |")
        peak = max(self.stages, key=lambda stage: stage.peak)
        rows.append(f"\nWhole run's peak: {peak.peak:.0f} MiB, in stage '{peak.name}'.")
        return "\n".join(rows)


def wrap_stage(tracker: Tracker, module: ModuleType, attribute: str, name: str) -> None:
    """Make `module.attribute` a stage of its own: marked when it is called and when it returns."""
    function: Callable[..., Any] = getattr(module, attribute)

    @wraps(function)
    def staged(*args: Any, **kwargs: Any) -> Any:
        tracker.mark(name)
        try:
            return function(*args, **kwargs)
        finally:
            tracker.mark(f"after {name}")

    setattr(module, attribute, staged)


def fit_marks(tracker: Tracker) -> Any:
    """A Lightning callback that cuts fit into its parts: the first group of batches (training/datamodule.py:
    BatchGroups), the rest of each epoch, validation, and the end of each epoch (history, curves, checkpoints)."""
    import lightning as L

    class FitMarks(L.Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            tracker.mark(f"fit: epoch {trainer.current_epoch + 1}, first group of batches")

        def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            if batch_idx == 0:
                tracker.mark(f"fit: epoch {trainer.current_epoch + 1}, other batches")

        def on_validation_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            tracker.mark(f"fit: epoch {trainer.current_epoch + 1}, validation")

        def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            tracker.mark(f"fit: epoch {trainer.current_epoch + 1}, history, curves, checkpoints")

    return FitMarks()


def main(argv: list[str]) -> None:
    dataset, data_dir = train_dataset(argv)
    tracker = Tracker()
    tracker.mark("python start-up, options")
    for name, module in (("import torch", "torch"), ("import lightning", "lightning"),
                         ("import seqvision", "seqvision.experiments.train_test")):
        tracker.mark(name)
        importlib.import_module(module)
    tracker.mark("set up")
    # Checked only now, when the imports above have loaded what the check uses: before the tracker, they would move
    # memory out of the import stages.
    require_dataset(dataset, data_dir)

    import dataclasses

    from seqvision.cli import build_parser
    from seqvision.config import TrainConfig, load_preset
    from seqvision.evaluation import report
    from seqvision.experiments import train_test
    from seqvision.training import train

    args = build_parser().parse_args(["train", *argv])
    names = {field.name for field in dataclasses.fields(TrainConfig)}
    overrides = {name: value for name, value in vars(args).items() if name in names and value is not None}
    for module, attribute, name in ((train, "load_dataset", "load dataset"), (train, "split_batches", "split batches"),
                                    (train, "build_model", "build model"), (train, "_fit", "fit"),
                                    (train_test, "evaluate_run", "test pass"), (report, "write_report", "report")):
        wrap_stage(tracker, module, attribute, name)
    config = load_preset(args.config) if args.config else None
    train_test.train(config, out=args.out, progress=False, callbacks=[fit_marks(tracker)], **overrides)
    tracker.finish()
    print(f"`seqvision train {' '.join(argv)}`\n")
    print(tracker.table())


if __name__ == "__main__":
    run(lambda: main(sys.argv[1:]))
