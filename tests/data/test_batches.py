import statistics
import tracemalloc

import numpy as np
import pytest
import torch

from seqvision.data.batches import InMemoryBatches, Normalisation, pixel_statistics


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


@pytest.mark.parametrize("shape", [(50, 7, 9), (20, 6, 6, 3)])
def test_pixel_statistics_are_the_exact_mean_and_std(shape):
    images = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    pixels = images.ravel().tolist()
    # statistics works in exact fractions and rounds once: the reference for the float that is closest
    mean, std = pixel_statistics(images)
    assert mean == statistics.fmean(pixels)
    assert std == pytest.approx(statistics.pstdev(pixels), rel=1e-15, abs=0)
    assert std == pytest.approx(float(images.std(dtype=np.float64)), rel=1e-12, abs=0)
    every_other_row = images[:, ::2]  # not contiguous
    mean, std = pixel_statistics(every_other_row)
    assert mean == statistics.fmean(every_other_row.ravel().tolist())
    assert std == pytest.approx(statistics.pstdev(every_other_row.ravel().tolist()), rel=1e-15, abs=0)


def test_pixel_statistics_make_no_float_copy_of_the_images():
    # 4 M pixels across several chunks: ndarray.std would hold a float64 copy, 8 bytes a pixel
    images = np.random.default_rng(2).integers(0, 256, size=(4096, 32, 32), dtype=np.uint8)
    tracemalloc.start()
    try:
        Normalisation.of(images)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * images.size


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


def reference_shift(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """One image moved by a plain per-pixel loop: the reference for the batched gather."""
    height, width = image.shape
    moved = np.zeros_like(image)
    for row in range(height):
        for col in range(width):
            if 0 <= row - down < height and 0 <= col - right < width:
                moved[row, col] = image[row - down, col - right]
    return moved


def test_shift_images_matches_a_per_pixel_reference(images_and_labels):
    from seqvision.data.batches import shift_images

    images = torch.from_numpy(images_and_labels[0][:9])
    shifts = torch.tensor([[0, 0], [1, 0], [0, 1], [-2, 0], [0, -2], [2, 2], [-1, 1], [1, -2], [-2, -2]])
    moved = shift_images(images, shifts).numpy()
    for image, (down, right), result in zip(images.numpy(), shifts.tolist(), moved, strict=True):
        np.testing.assert_array_equal(result, reference_shift(image, down, right))


def test_shift_images_moves_a_colour_image_s_channels_together():
    from seqvision.data.batches import shift_images

    images = torch.randint(0, 256, (5, 7, 6, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    shifts = torch.tensor([[0, 0], [1, -1], [-3, 2], [2, 3], [-1, 0]])
    moved = shift_images(images, shifts)
    assert moved.shape == images.shape and moved.is_contiguous()
    for image, (down, right), result in zip(images.numpy(), shifts.tolist(), moved.numpy(), strict=True):
        for channel in range(3):
            np.testing.assert_array_equal(result[..., channel], reference_shift(image[..., channel], down, right))


def shifted_epoch(batches: InMemoryBatches, epoch: int) -> torch.Tensor:
    batches.set_epoch(epoch)
    return torch.cat([images for images, _ in batches])


def test_augmented_batches_are_seeded_shifted_copies(images_and_labels):
    images, labels = images_and_labels
    plain = InMemoryBatches(images, labels, 16, Normalisation(0.0, 1.0), shuffle=True, seed=3)
    shifted = InMemoryBatches(images, labels, 16, Normalisation(0.0, 1.0), shuffle=True, seed=3, max_shift=2)
    again = InMemoryBatches(images, labels, 16, Normalisation(0.0, 1.0), shuffle=True, seed=3, max_shift=2)
    assert epoch_order(shifted, 0) == epoch_order(plain, 0), "augmentation does not change which samples come"
    first = shifted_epoch(shifted, 0)
    assert torch.equal(first, shifted_epoch(again, 0))
    assert not torch.equal(first, shifted_epoch(shifted, 1)), "new shifts every epoch"
    unshifted = shifted_epoch(plain, 0)
    assert not torch.equal(first, unshifted)
    # every augmented image is its original moved by at most 2 pixels each way
    for moved, original in zip(first, unshifted, strict=True):
        candidates = [reference_shift(original.numpy(), down, right) for down in range(-2, 3) for right in range(-2, 3)]
        assert any(np.array_equal(moved.numpy(), candidate) for candidate in candidates)


def test_augmented_epoch_resumes_with_the_same_shifts(images_and_labels):
    batches = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3, max_shift=1)
    full = shifted_epoch(batches, 2)
    restored = InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, seed=3, max_shift=1)
    restored.load_state_dict({"epoch": 2, "batches_done": 3})
    restored.set_epoch(2)
    assert torch.equal(torch.cat([images for images, _ in restored]), full[48:])


def test_a_shift_as_large_as_the_image_is_refused(images_and_labels):
    from seqvision.errors import ConfigError

    with pytest.raises(ConfigError, match="--augment-shift 5 does not fit 6x5 images"):
        InMemoryBatches(*images_and_labels, 16, Normalisation(0.5, 0.25), shuffle=True, max_shift=5)
