"""Where an MNIST epoch's time goes: batching alone, a bare PyTorch loop, and the full Lightning run.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/epoch_speed.py [--model lstm] [--batch-size 128]

Each stage runs one epoch over the same 54,000 training images with the default configuration, so
the difference between stages is the cost of that layer. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from seqvision.config import TrainConfig
from seqvision.data import load_dataset
from seqvision.data.batches import split_batches
from seqvision.experiments.train_test import train
from seqvision.models import build_model
from seqvision.training.optim import build_optimizer


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    config = dataclasses.replace(TrainConfig(), model=args.model, batch_size=args.batch_size, epochs=1)
    splits = load_dataset(config.dataset)
    batches = split_batches(config, splits)
    torch.manual_seed(0)
    model = build_model(config, splits.image_shape, splits.num_classes)
    optimizer = build_optimizer(config, model.parameters())

    def batching_only() -> None:
        for _ in batches.train:
            pass

    def bare_loop() -> None:
        model.train()
        for images, labels in batches.train:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()

    def lightning_epoch() -> None:
        with tempfile.TemporaryDirectory() as folder:
            train(config, out=Path(folder) / "run", progress=False)

    steps = len(batches.train)
    rows = [("batching only (gather + normalise)", timed(batching_only)),
            ("bare PyTorch loop (forward, backward, clip, AdamW)", timed(bare_loop)),
            ("seqvision train, 1 epoch (Lightning, validation, checkpoints, test)", timed(lightning_epoch))]
    print(f"{steps} training steps of {args.batch_size} images, model {args.model}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print("| stage | seconds | ms per step |")
    print("| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {1000 * seconds / steps:.1f} |")


if __name__ == "__main__":
    main()
