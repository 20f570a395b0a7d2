"""Colour images (H, W, 3), channels last: how each model family reads them, and that every model learns from them."""

import pytest
import torch

from seqvision.config import TrainConfig
from seqvision.data import load_dataset
from seqvision.models import build_model, model_names
from seqvision.models.scan import ImageScan
from seqvision.models.summary import model_summary
from tests.models.fitting import losses_of_a_short_fit


def numbered(height: int, width: int) -> torch.Tensor:
    """One image whose value at (row, column, channel) spells out that position: 100*row + 10*column + channel."""
    rows, cols, channels = torch.meshgrid(torch.arange(height), torch.arange(width), torch.arange(3), indexing="ij")
    return (100 * rows + 10 * cols + channels).float()[None]


def test_a_colour_row_is_width_times_three_values_pixel_by_pixel():
    image = numbered(4, 5)
    rows = ImageScan("rows", (4, 5, 3))
    assert (rows.steps, rows.features) == (4, 15)
    # step 2 is row 2: pixel (2, 0) red, green, blue, then pixel (2, 1) ...
    assert rows(image)[0, 2, :6].tolist() == [200, 201, 202, 210, 211, 212]


def test_a_colour_column_is_height_times_three_values():
    columns = ImageScan("columns", (4, 5, 3))
    assert (columns.steps, columns.features) == (5, 12)
    assert columns(numbered(4, 5))[0, 1, :6].tolist() == [10, 11, 12, 110, 111, 112]


def test_a_colour_pixel_is_three_values_and_the_permutation_moves_whole_pixels():
    image = numbered(4, 5)
    pixels = ImageScan("pixels", (4, 5, 3))(image)
    assert pixels.shape == (1, 20, 3)
    assert pixels[0, 7].tolist() == [120, 121, 122]
    permuted = ImageScan("permuted-pixels", (4, 5, 3))(image)
    # the same fixed order as for greyscale images of that size, so the three values of a pixel stay together
    order = ImageScan("permuted-pixels", (4, 5)).order
    torch.testing.assert_close(permuted, pixels[:, order])


def test_greyscale_reading_is_unchanged():
    images = torch.rand(2, 6, 5)
    assert torch.equal(ImageScan("rows", (6, 5))(images), images)
    assert torch.equal(ImageScan("columns", (6, 5))(images), images.transpose(1, 2))
    assert torch.equal(ImageScan("pixels", (6, 5))(images), images.reshape(2, 30, 1))


def test_recurrent_input_width_and_cnn_filters_follow_the_channels():
    assert build_model(TrainConfig(model="lstm"), (32, 32, 3), 10).rnn.input_size == 96
    assert build_model(TrainConfig(model="cnn"), (32, 32, 3), 10).features[0].in_channels == 3
    assert build_model(TrainConfig(model="cnn-lstm"), (32, 32, 3), 10).features[0][0].in_channels == 3
    assert build_model(TrainConfig(model="renet"), (32, 32, 3), 10).sweeps[0].vertical.input_size == 12


def test_the_summary_of_a_colour_model_shows_its_input():
    text = model_summary(build_model(TrainConfig(model="cnn"), (8, 8, 3), 10), (8, 8, 3))
    # 5x5 filters over 3 channels: 3 * 25 * 32 weights and 32 biases
    assert "[1, 32, 8, 8]" in text and "2,432" in text and "ConvClassifier                           [1, 10]" in text


@pytest.fixture(scope="module")
def colour_digits():
    """The bundled digits in colour: each class drawn in its own tint, so both shape and colour carry the class."""
    splits = load_dataset("digits")
    images = torch.from_numpy(splits.train_images[:256]).float() / 255.0
    labels = torch.from_numpy(splits.train_labels[:256])
    tints = torch.rand(10, 3, generator=torch.Generator().manual_seed(0))
    colour = images[..., None] * tints[labels][:, None, None, :]
    return (colour - colour.mean()) / colour.std(), labels


@pytest.mark.parametrize("name", model_names())
def test_every_model_learns_from_colour_images(name, colour_digits):
    torch.manual_seed(0)
    images, labels = colour_digits
    model = build_model(TrainConfig(model=name, dataset="digits"), (8, 8, 3), 10)
    losses = losses_of_a_short_fit(model, images, labels)
    assert losses[-1] < 0.6 * losses[0], f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"
