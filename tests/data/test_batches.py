import numpy as np
import pytest
import torch

from seqvision.data.batches import InMemoryBatches, Normalisation


@pytest.fixture
def images_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(103, 6, 5), dtype=np.uint8)
    # label i tags sample i, so a batch tells which samples it holds
    return images, np.arange(103, dtype=np.int64)


def epoch_order(batches: InMemoryBatches, epoch: int) -> list[int]:
    batches.set_epoch(epoch)
    return [int(i) for _, labels in batches for i in labels]


def test_every_sample_once_per_epoch(images_and_labels):
    batches = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3)
    assert len(batches) == 7
    for epoch in range(3):
        assert sorted(epoch_order(batches, epoch)) == list(range(103))


def test_order_is_seeded_and_changes_between_epochs(images_and_labels):
    first = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3)
    again = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3)
    other = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=4)
    assert epoch_order(first, 0) == epoch_order(again, 0)
    assert epoch_order(first, 0) != epoch_order(first, 1)
    assert epoch_order(first, 0) != epoch_order(other, 0)
    assert epoch_order(first, 1) == epoch_order(again, 1)


def test_unshuffled_batches_keep_the_stored_order(images_and_labels):
    batches = InMemoryBatches(*images_and_labels, 10, Normalisation(0.5, 0.25))
    assert epoch_order(batches, 0) == list(range(103))


def test_batches_are_normalised_float_images(images_and_labels):
    images, labels = images_and_labels
    norm = Normalisation.of(images)
    batches = InMemoryBatches(images, labels, 200, norm)
    ((batch, _),) = list(batches)
    assert batch.dtype == torch.float32 and batch.shape == (103, 6, 5)
    expected = (torch.from_numpy(images).double() / 255 - norm.mean) / norm.std
    torch.testing.assert_close(batch.double(), expected, rtol=1e-5, atol=1e-5)
    assert abs(float(batch.mean())) < 1e-4 and abs(float(batch.std()) - 1) < 1e-2


def test_blank_images_do_not_divide_by_zero():
    norm = Normalisation.of(np.zeros((4, 3, 3), dtype=np.uint8))
    assert norm.std == 1.0


def test_state_dict_resumes_mid_epoch(images_and_labels):
    batches = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3)
    full = epoch_order(batches, 2)
    batches.set_epoch(2)
    iterator = iter(batches)
    for _ in range(3):
        next(iterator)
    batches.batches_done = 3
    restored = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3)
    restored.load_state_dict(batches.state_dict())
    restored.set_epoch(2)
    assert [int(i) for _, labels in restored for i in labels] == full[48:]
    assert epoch_order(restored, 3) == epoch_order(batches, 3), "the next epoch starts from its beginning"
