"""Seconds to prepare one epoch of augmented training batches, with no model: what each transform adds to an epoch.

    SEQVISION_DATA=../shared/datasets .venv/bin/python benchmarks/augment_speed.py [--config cnn-lstm-mnist]
        [--batch-size 128] [--rounds 3] [--elastic 34] [--threads N]

Iterates the run's training batches (gather, shifts, then rotation, scaling and elastic distortion as the
configuration asks, normalisation) as training does, for four settings of the same configuration: no
augmentation, the shifts alone, the shifts with the configuration's rotation and scaling, and all of those with
an elastic distortion of strength --elastic (sigma 4, Simard et al.'s MNIST setting). The settings run
interleaved for --rounds rounds after an untimed warm-up epoch; the table gives each one's median and its ratio
to the epoch without augmentation. To compare two versions of seqvision, run it from each checkout (with
`PYTHONPATH` at that checkout's `src`), one after the other. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from datetime import datetime

import torch

from bench_data import require_dataset, run
from seqvision.config import TrainConfig, load_preset
from seqvision.data.batches import split_batches
from seqvision.data.registry import load_dataset
from seqvision.data.splits import ImageSplits


def settings(config: TrainConfig, elastic: float) -> dict[str, TrainConfig]:
    shift = config.augment_shift or 2
    plain = dataclasses.replace(config, augment_shift=0, augment_rotate=0.0, augment_scale=0.0, augment_elastic=0.0)
    shifted = dataclasses.replace(plain, augment_shift=shift)
    turned = dataclasses.replace(shifted, augment_rotate=config.augment_rotate or 10.0,
                                 augment_scale=config.augment_scale or 0.1)
    distorted = dataclasses.replace(turned, augment_elastic=elastic, augment_elastic_sigma=4.0)
    return {"no augmentation": plain, f"shifts of up to {shift} pixels": shifted,
            f"shifts, rotation by up to {turned.augment_rotate:g} degrees, scaling by {turned.augment_scale:g}": turned,
            f"all of those and elastic distortion (alpha {elastic:g}, sigma 4)": distorted}


def epoch_seconds(config: TrainConfig, splits: ImageSplits) -> float:
    batches = split_batches(config.validate(), splits).train
    started = time.perf_counter()
    for _ in batches:
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="cnn-lstm-mnist", help="a preset name or config file [cnn-lstm-mnist]")
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats of every setting [3]")
    parser.add_argument("--elastic", type=float, default=34.0, help="elastic distortion's alpha [34]")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads; default: PyTorch's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_preset(args.config)
    if args.batch_size:
        config = dataclasses.replace(config, batch_size=args.batch_size)
    require_dataset(config.dataset, config.data_dir)
    splits = load_dataset(config.dataset, config.data_dir, config)
    variants = settings(config, args.elastic)
    started = datetime.now().strftime("%Y-%m-%d %H:%M")
    epoch_seconds(list(variants.values())[-1], splits)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            seconds[name].append(epoch_seconds(variant, splits))
    baseline = statistics.median(seconds["no augmentation"])
    print(f"{started}, {args.config} at batch {config.batch_size}, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds\n")
    print("| training batches of one epoch | seconds | rounds | against no augmentation |")
    print("| --- | --- | --- | --- |")
    for name, values in seconds.items():
        median = statistics.median(values)
        rounds = ", ".join(f"{value:.2f}" for value in values)
        print(f"| {name} | {median:.2f} | {rounds} | {median / baseline:.1f}x |")


if __name__ == "__main__":
    run(main)
