"""Seed presets and the options they need: Keras's validation split, plain /255 scaling, the sigmoid cell."""

import json

import numpy as np

import seqvision
from seqvision.cli import main
from seqvision.config import TrainConfig
from seqvision.data import load_dataset
from seqvision.data.batches import split_batches, validation_split
from seqvision.runs.folder import RunFolder


def test_last_validation_split_holds_out_the_end_in_file_order():
    labels = np.arange(50) % 10
    kept, held_out = validation_split(labels, TrainConfig(val_fraction=0.2, val_split="last"))
    assert kept.tolist() == list(range(40)) and held_out.tolist() == list(range(40, 50))


def test_stratified_validation_split_keeps_class_balance():
    labels = np.repeat(np.arange(10), 20)
    _, held_out = validation_split(labels, TrainConfig(val_fraction=0.2, seed=3))
    assert np.bincount(labels[held_out]).tolist() == [4] * 10


def test_scale_normalisation_only_divides_by_the_pixel_range():
    splits = load_dataset("digits")
    scaled = split_batches(TrainConfig(dataset="digits", normalise="scale"), splits)
    standard = split_batches(TrainConfig(dataset="digits"), splits)
    assert (scaled.normalisation.mean, scaled.normalisation.std) == (0.0, 1.0)
    images, _ = next(iter(scaled.test))
    assert images.min() >= 0 and images.max() <= 1
    assert abs(standard.normalisation.mean) > 0


def test_seed_000_preset_trains_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "seed000"
    code = main(["train", "--config", "seed-000-lstm", "--dataset", "digits", "--epochs", "2", "--no-progress",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    config = RunFolder.open(out).load_config()
    assert (config.cell_activation, config.optimizer, config.lr, config.batch_size) == ("sigmoid", "rmsprop", 0.01, 64)
    assert (config.val_split, config.val_fraction, config.normalise, config.init) == ("last", 0.2, "scale", "keras")
    assert config.epochs == 2, "flags override the preset"
    # The explicit cell's weights went through the checkpoint and back: eval reproduces the recorded metrics.
    recorded = json.loads(RunFolder.open(out).test_metrics_path.read_text())
    assert seqvision.evaluate(out) == recorded


def test_a_config_file_by_path(tmp_path):
    path = tmp_path / "mine.yaml"
    TrainConfig(model="gru", dataset="digits", epochs=1, hidden=16).save(path)
    code = main(["train", "--config", str(path), "--no-progress", "--out", str(tmp_path / "run")])
    assert code == 0
    assert RunFolder.open(tmp_path / "run").load_config().model == "gru"
