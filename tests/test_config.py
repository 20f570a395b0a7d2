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
