"""Random rotation, scaling, elastic distortion and flips of training batches: checked against exact references
(torch.rot90, torch.flip, pixel positions), for their seeded determinism and ranges, and in a short training run."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from seqvision.config import TrainConfig
from seqvision.data.augment import Augmentation, Warp, apply_warp, batch_generator, gaussian_blur
from seqvision.data.batches import InMemoryBatches, Normalisation
from seqvision.errors import ConfigError

# Bilinear weights at exact pixel centres are 0 or 1 up to float rounding of the grid coordinates.
CENTRES = {"atol": 1e-3, "rtol": 0}


def pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def fixed(count: int, angle: float = 0.0, scale: float = 1.0, flip: bool = False) -> Warp:
    return Warp(torch.full((count,), angle), torch.full((count,), scale), torch.full((count,), flip))


@pytest.mark.parametrize("side", [7, 8])
@pytest.mark.parametrize(("angle", "turns"), [(90, 1), (-90, -1), (180, 2)])
def test_quarter_turns_equal_rot90(side, angle, turns):
    images = pixels(3, side, side)
    rotated = apply_warp(images, fixed(3, angle=angle))
    # Positive angles turn counter-clockwise as displayed, as rot90 does from the rows towards the columns.
    torch.testing.assert_close(rotated, torch.rot90(images, turns, dims=(1, 2)).float(), **CENTRES)


def test_colour_images_turn_and_flip_with_their_channels_together():
    images = pixels(2, 6, 6, 3)
    torch.testing.assert_close(apply_warp(images, fixed(2, angle=90)),
                               torch.rot90(images, 1, dims=(1, 2)).float(), **CENTRES)
    flipped = apply_warp(images.float(), fixed(2, flip=True))
    assert flipped.shape == (2, 6, 6, 3) and flipped.dtype == torch.float32
    torch.testing.assert_close(flipped, torch.flip(images, dims=(2,)).float(), **CENTRES)


def test_flip_equals_torch_flip_for_the_flipped_images_only():
    images = pixels(4, 5, 9)
    flips = torch.tensor([True, False, True, False])
    warped = apply_warp(images, Warp(torch.zeros(4), torch.ones(4), flips))
    expected = torch.where(flips[:, None, None], torch.flip(images, dims=(2,)), images).float()
    torch.testing.assert_close(warped, expected, **CENTRES)


def test_no_rotation_scale_one_and_no_elastic_is_the_identity():
    images = pixels(5, 8, 6)
    transform = Augmentation().draw(5, 8, 6, batch_generator(0, 0, 0))
    torch.testing.assert_close(apply_warp(images, transform), images.float(), atol=1e-4, rtol=0)
    zero_field = dataclasses.replace(transform, displacement=torch.zeros(5, 2, 8, 6))
    torch.testing.assert_close(apply_warp(images, zero_field), images.float(), atol=1e-4, rtol=0)


def test_scaling_moves_pixels_away_from_the_centre_in_proportion():
    image = torch.zeros(1, 9, 9)
    image[0, 4 + 1, 4 - 2] = 200.0  # one step below the centre, two to its left
    doubled = apply_warp(image, fixed(1, scale=2.0))
    assert doubled[0, 4 + 2, 4 - 4] == pytest.approx(200.0, abs=1e-3)
    halved = apply_warp(doubled, fixed(1, scale=0.5))
    assert halved[0, 4 + 1, 4 - 2] == pytest.approx(200.0, abs=1e-3)


def test_what_the_grid_leaves_the_image_for_is_background():
    images = torch.full((1, 8, 8), 255, dtype=torch.uint8)
    shrunk = apply_warp(images, fixed(1, scale=0.5))
    assert shrunk[0, 0, 0] == 0 and shrunk[0, 4, 4] == pytest.approx(255.0)


def test_elastic_displacements_are_smooth_and_bounded_by_alpha():
    augmentation = Augmentation(elastic=6.0, elastic_sigma=3.0)
    displacement = augmentation.draw(64, 28, 28, batch_generator(1, 2, 3)).displacement
    assert displacement.shape == (64, 2, 28, 28)
    assert displacement.abs().max() <= 6.0 and displacement.abs().max() > 0.5
    # Neighbours move alike: the field is smooth, unlike the raw uniform noise it is made from.
    step = (displacement[..., 1:] - displacement[..., :-1]).abs().mean()
    assert step < 0.5 * displacement.abs().mean()  # about 1.3 for the unsmoothed noise
    assert gaussian_blur(torch.ones(1, 1, 5, 5), 40.0).max() <= 1.0


@pytest.mark.parametrize("shape", [(4, 2, 28, 28), (3, 2, 27, 23), (1, 1, 5, 5)])
@pytest.mark.parametrize("sigma", [0.3, 1.5, 4.0, 40.0])
def test_gaussian_blur_equals_scipy_with_zeros_outside(shape, sigma):
    from scipy.ndimage import gaussian_filter

    fields = torch.rand(*shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
    # scipy's window, like seqvision's, runs to 3 sigma each side and its weights sum to 1 over all of it.
    expected = gaussian_filter(fields.double().numpy(), sigma, mode="constant", radius=math.ceil(3 * sigma),
                               axes=(2, 3))
    torch.testing.assert_close(gaussian_blur(fields, sigma), torch.from_numpy(expected).float(), atol=1e-6, rtol=0)


def test_parameters_stay_in_their_ranges():
    augmentation = Augmentation(rotate=15.0, scale=0.2, flip=True)
    drawn = augmentation.draw(4000, 8, 8, batch_generator(0, 0, 0))
    assert drawn.angles.abs().max() <= 15.0 and drawn.angles.min() < -14.0 and drawn.angles.max() > 14.0
    assert drawn.scales.min() >= 0.8 and drawn.scales.max() <= 1.2
    assert 0.45 < drawn.flips.float().mean() < 0.55
    assert drawn.displacement is None
    assert not Augmentation(rotate=15.0).draw(100, 8, 8, batch_generator(0, 0, 0)).flips.any()


def test_turning_one_transform_on_leaves_the_others_draws():
    rotate_only = Augmentation(rotate=10.0).draw(50, 8, 8, batch_generator(3, 1, 4))
    with_more = Augmentation(rotate=10.0, scale=0.1, elastic=2.0).draw(50, 8, 8, batch_generator(3, 1, 4))
    assert torch.equal(rotate_only.angles, with_more.angles)


def augmented(images, labels, seed=3, **options) -> InMemoryBatches:
    augmentation = Augmentation(**({"rotate": 20.0, "scale": 0.1, "elastic": 3.0, "elastic_sigma": 2.0} | options))
    return InMemoryBatches(images, labels, 16, Normalisation(0.0, 1.0), shuffle=True, seed=seed, max_shift=1,
                           augment=augmentation)


@pytest.fixture
def digits_like():
    return pixels(70, 12, 10).numpy(), np.arange(70, dtype=np.int64)


def test_the_same_seed_epoch_and_batch_give_identical_batches(digits_like):
    first = [images for images, _ in augmented(*digits_like)]
    again = [images for images, _ in augmented(*digits_like)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0][:8], first[1][:8])
    other_seed = [images for images, _ in augmented(*digits_like, seed=4)]
    assert not torch.equal(first[0], other_seed[0])
    next_epoch = augmented(*digits_like)
    next_epoch.set_epoch(1)
    assert not torch.equal(first[0], next(iter(next_epoch))[0])


def test_different_batches_draw_different_transforms():
    assert batch_generator(0, 0, 0).initial_seed() != batch_generator(0, 0, 1).initial_seed()
    draws = [Augmentation(rotate=30.0).draw(8, 8, 8, batch_generator(0, epoch, number)).angles
             for epoch in range(2) for number in range(3)]
    assert len({tuple(angles.tolist()) for angles in draws}) == len(draws)


def test_a_resumed_epoch_sees_the_same_augmented_batches(digits_like):
    straight = augmented(*digits_like)
    straight.set_epoch(2)
    expected = [images for images, _ in straight]
    interrupted = augmented(*digits_like)
    interrupted.set_epoch(2)
    stream = iter(interrupted)
    next(stream)
    interrupted.batches_done = 1  # what the training loop records after a finished batch
    restored = augmented(*digits_like)
    restored.load_state_dict(interrupted.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(expected[1:], [images for images, _ in restored], strict=True))


def test_shards_are_the_parts_of_the_single_process_batches(digits_like):
    whole = augmented(*digits_like)
    whole.batch_size = 32
    whole.shard(rank=0, world_size=1)
    parts = []
    for rank in range(2):
        shard = augmented(*digits_like)
        shard.shard(rank=rank, world_size=2)
        parts.append(list(shard))
    for number, (images, labels) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][number][1], parts[1][number][1]]), labels)
        assert torch.equal(torch.cat([parts[0][number][0], parts[1][number][0]]), images)


def test_flip_is_refused_where_a_mirror_changes_the_class():
    with pytest.raises(ConfigError, match=r"--augment-flip is refused for mnist: a mirrored mnist image is another "
                                          r"symbol or none.*Drop --augment-flip.*cifar10, fashion-mnist"):
        Augmentation.from_config(TrainConfig(dataset="mnist", augment_flip=True))
    allowed = Augmentation.from_config(TrainConfig(dataset="fashion-mnist", augment_flip=True))
    assert allowed is not None and allowed.flip
    assert Augmentation.from_config(TrainConfig(dataset="mnist")) is None


@pytest.mark.parametrize(("option", "value", "message"), [
    ("augment_rotate", 200.0, r"--augment-rotate must be in \[0, 180\] degrees"),
    ("augment_scale", 1.0, r"--augment-scale must be in \[0, 1\)"),
    ("augment_elastic", -1.0, r"--augment-elastic must be zero \(off\) or positive"),
    ("augment_elastic_sigma", 0.0, r"--augment-elastic-sigma positive"),
])
def test_out_of_range_options_are_refused(option, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{option: value}).validate()


def test_flip_on_digits_is_refused_by_the_command_line_before_any_run_folder(capsys, tmp_path):
    from seqvision.cli import main

    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--augment-flip", "--epochs", "1", "--out", str(out)])
    assert code == 2 and "--augment-flip is refused for digits" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_a_short_digits_training_with_every_augmentation_runs(capsys, tmp_path):
    from seqvision.cli import main

    out = tmp_path / "run"
    code = main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "32", "--lr", "0.01",
                 "--batch-size", "64", "--no-progress", "--no-report", "--augment-shift", "1",
                 "--augment-rotate", "12", "--augment-scale", "0.1",
                 "--augment-elastic", "4", "--augment-elastic-sigma", "1.5", "--out", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0 and "test accuracy" in stdout
    saved = TrainConfig.load(out / "config.yaml")
    assert (saved.augment_rotate, saved.augment_scale, saved.augment_elastic) == (12.0, 0.1, 4.0)
    accuracy = float(stdout.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 25.0, "three epochs on augmented digits learn well beyond chance (10%)"
