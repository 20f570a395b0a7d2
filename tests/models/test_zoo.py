"""Every registered model: shapes, parameter counts, learning, and the inputs and options it refuses."""

import dataclasses

import numpy as np
import pytest
import torch

from seqvision.config import TrainConfig, load_preset, preset_names
from seqvision.data import load_dataset
from seqvision.errors import ConfigError, InputShapeError
from seqvision.models import build_model, get_model_entry, model_names, resolve_model_options
from seqvision.models.scan import ImageScan
from tests.models.fitting import losses_of_a_short_fit

SHAPES = [(28, 28), (8, 8)]
GATES = {"lstm": 4, "stacked-lstm": 4, "bilstm": 4, "gru": 3, "rnn": 1}


def parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def recurrent_count(name: str, features: int, classes: int = 10) -> int:
    """torch's layout: per layer and direction, gates x (input weights + recurrent weights + two biases)."""
    defaults = get_model_entry(name).defaults
    hidden, layers = defaults["hidden"], defaults["layers"]
    directions = 2 if name == "bilstm" else 1
    total, width = 0, features
    for _ in range(layers):
        total += directions * GATES[name] * (hidden * width + hidden * hidden + 2 * hidden)
        width = directions * hidden
    return total + width * classes + classes


def cnn_count(height: int, width: int, classes: int = 10) -> int:
    flat = 64 * -(-height // 4) * -(-width // 4)
    return (25 * 32 + 32) + (25 * 32 * 64 + 64) + (flat * 1024 + 1024) + (1024 * classes + classes)


def test_every_seed_and_zoo_model_is_registered():
    assert set(model_names()) >= {"lstm", "stacked-lstm", "cnn", "cnn-lstm", "gru", "rnn", "bilstm", "renet"}


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28", "8x8"])
@pytest.mark.parametrize("name", sorted(GATES))
def test_recurrent_parameter_counts_follow_the_layout(name, shape):
    model = build_model(TrainConfig(model=name), shape, 10)
    assert parameters(model) == recurrent_count(name, shape[1])


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28", "8x8"])
def test_cnn_parameter_count_matches_keras(shape):
    # On 28x28 this is the count Keras's model.summary() prints for seed 002's CNN: 3,274,634.
    assert parameters(build_model(TrainConfig(model="cnn"), shape, 10)) == cnn_count(*shape)


def test_parameter_counts_match_golden(golden):
    lines = [f"{'model':<14}{'28x28':>12}{'8x8':>12}"]
    for name in model_names():
        counts = [parameters(build_model(TrainConfig(model=name), shape, 10)) for shape in SHAPES]
        lines.append(f"{name:<14}" + "".join(f"{count:>12,}" for count in counts))
    golden("model_parameters.txt", "\n".join(lines) + "\n")


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28", "8x8"])
@pytest.mark.parametrize("name", model_names())
def test_output_shape_and_wrong_sizes_fail_loudly(name, shape):
    model = build_model(TrainConfig(model=name), shape, 10).eval()
    assert model(torch.rand(5, *shape)).shape == (5, 10)
    other = (8, 8) if shape == (28, 28) else (28, 28)
    expected = rf"expected a batch of images shaped \('batch', {shape[0]}, {shape[1]}\)"
    with pytest.raises(InputShapeError, match=expected):
        model(torch.rand(5, *other))
    # time and batch swapped, as happens when a (T, B, F) tensor reaches a batch-first model
    with pytest.raises(InputShapeError, match=rf"got \({shape[0]}, 5, {shape[1]}\)"):
        model(torch.rand(shape[0], 5, shape[1]))


@pytest.fixture(scope="module")
def digits_batch():
    splits = load_dataset("digits")
    images = torch.from_numpy(splits.train_images[:256]).float() / 16.0
    return (images - images.mean()) / images.std(), torch.from_numpy(splits.train_labels[:256])


LEARNERS = [dict(model=name) for name in model_names()] + [
    dict(model="lstm", scan="pixels"), dict(model="gru", scan="permuted-pixels"), dict(model="lstm", scan="columns"),
    dict(model="bilstm", pooling="attention"), dict(model="cnn-lstm", pooling="attention", scan="columns"),
    dict(model="lstm", init="keras"), dict(model="cnn", init="keras"),
    # A sigmoid cell output lies in (0, 1) and learns slowly; seed 000 pairs it with a high rate (0.01).
    dict(model="lstm", cell_activation="sigmoid", lr=1e-2),
    dict(model="stacked-lstm", cell_activation="sigmoid", lr=3e-2),
]


@pytest.mark.parametrize("options", LEARNERS, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_loss_falls_in_a_few_steps_on_digits(options, digits_batch):
    torch.manual_seed(0)
    images, labels = digits_batch
    options = dict(options)
    lr = options.pop("lr", 3e-3)
    model = build_model(TrainConfig(dataset="digits", **options), (8, 8), 10)
    losses = losses_of_a_short_fit(model, images, labels, lr=lr)
    # 64 one-pixel steps are a much harder read than 8 rows, so they get a smaller required drop.
    required = 0.85 if "pixels" in options.get("scan", "") else 0.6
    assert losses[-1] < required * losses[0], f"loss went {losses[0]:.3f} -> {losses[-1]:.3f}"


@pytest.mark.parametrize(("options", "message"), [
    (dict(model="cnn", scan="pixels"), "model cnn cannot read images with --scan pixels; it accepts rows"),
    (dict(model="renet", scan="columns"), "model renet cannot read images with --scan columns"),
    (dict(model="cnn-lstm", scan="permuted-pixels"), "accepts rows, columns"),
    (dict(model="cnn", hidden=64), "model cnn has no --hidden option; it takes --dropout"),
    (dict(model="cnn", pooling="attention"), "model cnn does not support --pooling attention"),
    (dict(model="gru", cell_activation="sigmoid"), "needs the explicit LSTM cell"),
    (dict(model="bilstm", cell_activation="sigmoid"), "unidirectional LSTMs only"),
])
def test_combinations_that_cannot_work_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model(TrainConfig(**options), (28, 28), 10)


def test_model_defaults_fill_only_what_the_config_leaves_open():
    resolved = resolve_model_options(TrainConfig(model="stacked-lstm"))
    assert (resolved.hidden, resolved.layers, resolved.dropout) == (50, 2, 0.2)
    assert resolve_model_options(TrainConfig(model="stacked-lstm", hidden=20)).hidden == 20
    assert resolve_model_options(TrainConfig(model="cnn")).dropout == 0.5
    assert resolve_model_options(TrainConfig(model="cnn", dropout=0.0)).dropout == 0.0


def test_pixel_scans_give_one_value_per_step():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 28, 28)
    pixels = ImageScan("pixels", (28, 28))(images)
    assert pixels.shape == (2, 784, 1)
    torch.testing.assert_close(pixels[:, :, 0], images.reshape(2, -1))
    torch.manual_seed(123)
    permuted = ImageScan("permuted-pixels", (28, 28))(images)
    torch.manual_seed(456)
    again = ImageScan("permuted-pixels", (28, 28))(images)
    # One fixed permutation, whatever the torch seed: every pixel once, in a shuffled order.
    torch.testing.assert_close(permuted, again)
    assert sorted(permuted[0, :, 0].tolist()) == images[0].reshape(-1).tolist()
    assert not torch.equal(permuted, pixels)


def test_bilstm_concatenates_both_directions_final_states():
    model = build_model(TrainConfig(model="bilstm"), (28, 28), 10).eval()
    images = torch.rand(3, 28, 28)
    outputs, (h_n, _) = model.rnn(model.scan(images))
    torch.testing.assert_close(model.pool(outputs), torch.cat([h_n[-2], h_n[-1]], dim=1))


def test_attention_pooling_of_a_constant_sequence_is_that_constant():
    model = build_model(TrainConfig(model="lstm", pooling="attention"), (28, 28), 10)
    sequence = torch.rand(4, 1, 128).expand(4, 28, 128)
    torch.testing.assert_close(model.pool(sequence), sequence[:, 0])


def test_keras_init_sets_forget_bias_orthogonal_and_glorot_weights():
    model = build_model(TrainConfig(model="lstm", init="keras"), (28, 28), 10)
    lstm, hidden = model.rnn, 128
    expected_bias = torch.zeros(4 * hidden)
    expected_bias[hidden:2 * hidden] = 1.0
    torch.testing.assert_close(lstm.bias_ih_l0.detach(), expected_bias)
    torch.testing.assert_close(lstm.bias_hh_l0.detach(), torch.zeros(4 * hidden))
    recurrent = lstm.weight_hh_l0.detach()
    torch.testing.assert_close(recurrent.T @ recurrent, torch.eye(hidden), atol=1e-5, rtol=0)
    bound = np.sqrt(6 / (28 + 4 * hidden))
    assert lstm.weight_ih_l0.abs().max() <= bound and lstm.weight_ih_l0.abs().max() > 0.9 * bound
    assert torch.count_nonzero(model.head.bias) == 0


def test_torch_init_keeps_pytorch_defaults():
    torch.manual_seed(0)
    default = build_model(TrainConfig(model="lstm"), (28, 28), 10)
    torch.manual_seed(0)
    explicit = build_model(TrainConfig(model="lstm", init="torch"), (28, 28), 10)
    for (name, a), (_, b) in zip(default.state_dict().items(), explicit.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_loads_and_builds(preset):
    config = load_preset(preset).validate()
    resolved = resolve_model_options(config)
    assert dataclasses.asdict(resolved) == dataclasses.asdict(config), "presets spell out the model's options"
    assert build_model(config, (28, 28), 10)(torch.rand(2, 28, 28)).shape == (2, 10)


def test_seed_presets_exist():
    assert {"seed-000-lstm", "seed-002-stacked-lstm", "seed-002-cnn", "seed-003-cnn-lstm"} <= set(preset_names())
    assert load_preset("seed-000-lstm").cell_activation == "sigmoid"


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match=r"no config file 'seed-9' .*presets: .*seed-000-lstm"):
        load_preset("seed-9")


COLOUR = (9, 7, 3)  # unequal sides, so a swapped height and width cannot pass


@pytest.mark.parametrize("name", model_names())
def test_every_model_reads_colour_images_and_names_the_layout_it_expects(name):
    model = build_model(TrainConfig(model=name), COLOUR, 10).eval()
    assert model(torch.rand(5, *COLOUR)).shape == (5, 10)
    with pytest.raises(InputShapeError, match=r"shaped \('batch', 9, 7, 3\), got \(5, 9, 7\).*9x7 colour images; "
                                              r"pass \(batch, height, width, channels\)"):
        model(torch.rand(5, 9, 7))
    # channels first, as torchvision gives them, is refused rather than read as 3 rows of 9 x 7
    with pytest.raises(InputShapeError, match=r"got \(5, 3, 9, 7\)"):
        model(torch.rand(5, 3, 9, 7))
