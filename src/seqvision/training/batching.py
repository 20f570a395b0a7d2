"""From a loaded dataset to the three streams of batches a run uses: train, validation, test."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from seqvision.config import TrainConfig
from seqvision.data import ImageSplits, stratified_split
from seqvision.data.batches import InMemoryBatches, Normalisation

EVAL_BATCH_SIZE = 1000


@dataclass
class RunBatches:
    train: InMemoryBatches
    val: InMemoryBatches
    test: InMemoryBatches
    normalisation: Normalisation


def limit(images: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    return (images[:count], labels[:count]) if count else (images, labels)


def split_batches(config: TrainConfig, splits: ImageSplits) -> RunBatches:
    """Hold out a stratified, seeded part of the training set for validation; the test set stays unseen."""
    (train_images, train_labels), (test_images, test_labels) = train_and_test(config, splits)
    if config.val_on_test:
        print("warning: --val-on-test validates on the test set, as seed 002 does; early stopping and the best "
              "checkpoint then see the test data, so the test accuracy is optimistic.", file=sys.stderr)
        val_images, val_labels = test_images, test_labels
    else:
        keep, held_out = validation_split(train_labels, config)
        val_images, val_labels = train_images[held_out], train_labels[held_out]
        train_images, train_labels = train_images[keep], train_labels[keep]
    normalisation = Normalisation.of(train_images) if config.normalise == "standardise" else Normalisation(0.0, 1.0)
    return RunBatches(
        train=InMemoryBatches(train_images, train_labels, config.batch_size, normalisation,
                              shuffle=True, seed=config.seed, max_shift=config.augment_shift),
        val=InMemoryBatches(val_images, val_labels, EVAL_BATCH_SIZE, normalisation),
        test=eval_batches(test_images, test_labels, normalisation),
        normalisation=normalisation,
    )


def train_and_test(config: TrainConfig, splits: ImageSplits) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The (images, labels) a run trains on and is tested on: the official splits, or with `cv_folds`, the
    training set minus one stratified fold, and that fold."""
    train_images, train_labels = limit(splits.train_images, splits.train_labels, config.train_limit)
    if not config.cv_folds:
        return (train_images, train_labels), limit(splits.test_images, splits.test_labels, config.test_limit)
    from sklearn.model_selection import StratifiedKFold

    # The same seed in every fold of one cross-validation, so the folds partition the training set.
    folds = StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed)
    kept, held_out = list(folds.split(train_labels, train_labels))[config.cv_fold]
    return (train_images[kept], train_labels[kept]), (train_images[held_out], train_labels[held_out])


def validation_split(labels: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out). `last` holds out the final fraction in file order, as Keras's
    `validation_split` does; `stratified` holds out a seeded fraction of every class."""
    if config.val_split == "last":
        count = len(labels) - round(len(labels) * config.val_fraction)
        return np.arange(count), np.arange(count, len(labels))
    return stratified_split(labels, config.val_fraction, config.seed)


def eval_batches(images: np.ndarray, labels: np.ndarray, normalisation: Normalisation) -> InMemoryBatches:
    return InMemoryBatches(images, labels, EVAL_BATCH_SIZE, normalisation)
