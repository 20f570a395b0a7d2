"""`seqvision presets` lists every shipped preset with what it reproduces and its result; each one loads."""

import pytest

from seqvision.cli import main
from seqvision.config import TrainConfig, load_preset, preset_names, presets

SHIPPED = {"bilstm-mnist", "cnn-lstm-mnist", "cnn-mnist", "renet-mnist", "seed-000-lstm", "seed-002-cnn",
           "seed-002-stacked-lstm", "seed-003-cnn-lstm"}


def listed_presets(capsys) -> dict[str, tuple[str, str]]:
    """Run `seqvision presets`; {name: (reproduces, result)} read back from its output."""
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    found = {}
    for at, line in enumerate(lines):
        if line and not line.startswith(" "):
            reproduces, result = lines[at + 1], lines[at + 2]
            assert reproduces.strip().startswith("reproduces:"), lines
            assert result.strip().startswith("result:"), lines
            found[line] = (reproduces.split(":", 1)[1].strip(), result.split(":", 1)[1].strip())
    return found


def test_presets_command_lists_each_preset_with_reproduces_and_result(capsys):
    listed = listed_presets(capsys)
    assert SHIPPED.issubset(listed), listed
    assert list(listed) == preset_names()
    for name, (reproduces, result) in listed.items():
        assert reproduces, f"{name} says nothing about what it reproduces"
        assert result, f"{name} gives no result"
        assert (reproduces, result) == (presets()[name].reproduces, presets()[name].result)


def test_every_listed_preset_loads_and_validates(capsys):
    for name in listed_presets(capsys):
        config = load_preset(name)
        assert isinstance(config, TrainConfig)
        config.validate()


def test_load_preset_reads_a_user_file_with_a_preset_section(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "preset:\n"
        "  reproduces: my own experiment\n"
        "  result: not measured\n"
        "model: cnn\n"
        "dataset: digits\n"
        "epochs: 3\n"
        "lr: 0.001\n"
    )
    config = load_preset(path)
    assert (config.model, config.dataset, config.epochs, config.lr) == ("cnn", "digits", 3, 0.001)
    assert config.batch_size == TrainConfig().batch_size, "keys the file does not name keep their defaults"
    config.validate()
    assert load_preset(str(path)) == config, "a path given as a string is read as a file too"


def test_load_preset_refuses_an_unknown_key_in_a_user_file(tmp_path):
    from seqvision.errors import ConfigError

    path = tmp_path / "typo.yaml"
    path.write_text("preset:\n  reproduces: x\n  result: y\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_preset(path)
