"""Batch groups: Lightning is handed the training batches several at a time, and that changes nothing learned."""

import numpy as np
import pytest
import torch

import seqvision
from seqvision.config import TrainConfig
from seqvision.data.batches import InMemoryBatches, Normalisation
from seqvision.runs import RunFolder, read_checkpoint
from seqvision.runs.history import read_history
from seqvision.training import datamodule
from seqvision.training.datamodule import BatchGroups


def training_batches() -> InMemoryBatches:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 6, 6), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50)
    # 50 images in batches of 4: 13 batches, the last of 2.
    return InMemoryBatches(images, labels, 4, Normalisation(0.0, 1.0), shuffle=True, seed=3, max_shift=1)


def flattened(groups: BatchGroups) -> tuple[list[tuple[int, int]], list[torch.Tensor], list[torch.Tensor]]:
    spans, images, labels = [], [], []
    for group in groups:
        spans.append((group.first, group.count))
        for batch_images, batch_labels in group.batches:
            images.append(batch_images)
            labels.append(batch_labels)
    return spans, images, labels


def test_groups_hold_every_batch_once_in_order():
    plain = list(training_batches())
    groups = BatchGroups(training_batches(), 5)
    spans, images, labels = flattened(groups)
    assert len(groups) == 3 and spans == [(0, 5), (5, 5), (10, 3)]
    assert [group.end for group in BatchGroups(training_batches(), 5)] == [5, 10, 13]
    assert len(images) == len(plain) == 13
    for (expected_images, expected_labels), got_images, got_labels in zip(plain, images, labels, strict=True):
        assert torch.equal(got_images, expected_images) and torch.equal(got_labels, expected_labels)


def test_groups_resume_where_the_epoch_stands():
    plain = list(training_batches())
    batches = training_batches()
    groups = BatchGroups(batches, 5)
    # What a checkpoint taken after batch 7 restores (a Ctrl-C stops at a group's end; 7 is any batch count).
    groups.load_state_dict({"epoch": 0, "batches_done": 7})
    assert groups.state_dict() == batches.state_dict() == {"epoch": 0, "batches_done": 7}
    spans, images, _ = flattened(groups)
    assert spans == [(7, 3), (10, 3)], "group 1 of 3, as Lightning counts it after 7 // 5 groups"
    assert all(torch.equal(got, expected) for got, (expected, _) in zip(images, plain[7:], strict=True))


@pytest.mark.parametrize("model", ["lstm", "gru"])  # oneDNN's LSTM; the GRU's own loops with their bf16 products
def test_grouping_changes_no_weight(tmp_path, monkeypatch, model):
    # bf16 autocast, clipping, a moving average and a step schedule: every part of the step that a group could
    # get out of order, such as a weight cast by autocast before the step before it updated the weight.
    config = TrainConfig(model=model, dataset="digits", hidden=64, epochs=2, lr=0.01, precision="bf16",
                         clip_grad=0.5, ema_decay=0.9, scheduler="onecycle")
    runs = {}
    for size in (1, datamodule.BATCHES_PER_GROUP):
        monkeypatch.setattr(datamodule, "BATCHES_PER_GROUP", size)
        runs[size] = seqvision.train(config, out=tmp_path / str(size), progress=False, report=False).run_dir
    one_by_one, grouped = (read_checkpoint(RunFolder(run).checkpoint("last"))["state_dict"] for run in runs.values())
    assert one_by_one.keys() == grouped.keys()
    assert all(torch.equal(one_by_one[name], grouped[name]) for name in one_by_one)
    histories = [[{k: v for k, v in row.items() if k != "seconds"} for row in read_history(RunFolder(run).history_path)]
                 for run in runs.values()]
    assert histories[0] == histories[1]
