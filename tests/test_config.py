import pytest

from seqvision.config import TrainConfig
from seqvision.errors import ConfigError


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lr": 0.0}, "--lr must be positive"),
        ({"epochs": -1}, "--epochs must be positive"),
        ({"batch_size": 0}, "--batch-size must be positive"),
        ({"hidden": 0}, "--hidden must be positive"),
        ({"dropout": 1.0}, r"--dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"--dropout must be in \[0, 1\)"),
        ({"optimizer": "adagrad"}, "choose one of: adam, rmsprop, sgd"),
        ({"scheduler": "step"}, "choose one of: none, plateau, cosine, onecycle"),
        ({"clip_grad": -1.0}, "--clip-grad must be zero"),
        ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\)"),
        ({"ema_decay": 1.0}, r"--ema-decay must be in \[0, 1\)"),
        ({"ema_decay": -0.5}, r"--ema-decay must be in \[0, 1\)"),
    ],
)
def test_invalid_values_are_refused_with_the_flag_named(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change).validate()


def test_yaml_round_trip(tmp_path):
    config = TrainConfig(model="lstm", dataset="digits", lr=0.01, scan="columns")
    config.save(tmp_path / "config.yaml")
    assert TrainConfig.load(tmp_path / "config.yaml") == config


def test_unknown_keys_in_a_file_are_named(tmp_path):
    (tmp_path / "config.yaml").write_text("model: lstm\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown keys \['learning_rate'\]"):
        TrainConfig.load(tmp_path / "config.yaml")


def test_each_choice_is_declared_once_and_read_everywhere():
    """The allowed values live in TrainConfig's Literal types; the models and the CLI read them from there."""
    from seqvision.cli import build_parser
    from seqvision.config import CHOICES
    from seqvision.models.cells import ACTIVATIONS
    from seqvision.models.scan import ImageScan

    assert CHOICES["scan"] == ImageScan.MODES == ("rows", "columns", "pixels", "permuted-pixels")
    assert tuple(ACTIVATIONS) == CHOICES["cell_activation"]
    assert set(CHOICES) == {"scan", "pooling", "cell_activation", "init", "optimizer", "scheduler", "val_split",
                            "normalise", "accelerator", "precision", "memory_format", "strategy", "colour",
                            "bad_images"}
    train = next(action for action in build_parser()._subparsers._group_actions[0].choices.items()
                 if action[0] == "train")[1]
    flags = {option.dest: option for option in train._actions}
    for name, choices in CHOICES.items():
        assert flags[name].completer() == list(choices), name
        with pytest.raises(ConfigError, match=f"choose one of: {', '.join(choices)}"):
            TrainConfig(**{name: "nonsense"}).validate()


def test_model_defaults_are_stated_once():
    """A model's architecture defaults live in its `defaults`; building it with none given uses exactly those."""
    import torch

    from seqvision.models import get_model_entry, model_names

    for name in model_names():
        entry = get_model_entry(name)
        torch.manual_seed(0)
        implicit = entry.builder((28, 28), 10)
        torch.manual_seed(0)
        explicit = entry.builder((28, 28), 10, **entry.defaults)
        assert [p.shape for p in implicit.parameters()] == [p.shape for p in explicit.parameters()], name
