"""`--dataset folder:PATH`: real PNG and JPEG folders of mixed sizes and modes, their split and split file, bad
input, the streamed path against the in-memory one, and runs trained, evaluated and predicted on them."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import seqvision
from seqvision.config import TrainConfig
from seqvision.data import get_dataset, load_dataset
from seqvision.data.augment import Augmentation
from seqvision.data.batches import InMemoryBatches, Normalisation, batches_of, split_batches
from seqvision.data.folder import STREAM_ENV
from seqvision.data.streaming import FileImages, StreamingBatches
from seqvision.errors import ConfigError, DatasetError
from seqvision.evaluation.evaluate import evaluate
from tests.folders import CLASSES, COLOURS, draw_picture, save, write_picture_folder


@pytest.fixture
def pictures(tmp_path):
    return write_picture_folder(tmp_path / "pictures")


def folder_config(root, **options) -> TrainConfig:
    return TrainConfig(dataset=f"folder:{root}", **options).validate()


def load(root, **options):
    config = folder_config(root, **options)
    return load_dataset(config.dataset, None, config)


def test_classes_are_the_sorted_sub_folders_and_a_seeded_fifth_of_each_is_held_out(pictures, capsys):
    spec = get_dataset(f"folder:{pictures}", folder_config(pictures, image_size=16))
    assert spec.classes == tuple(sorted(CLASSES)) and spec.image_shape == (16, 16) and spec.box_fraction == 1.0
    splits = load(pictures, image_size=16)
    assert splits.train_images.shape == (24, 16, 16) and splits.train_images.dtype == np.uint8
    # 10 pictures per class: 2 of each held out, whatever their size or colour mode
    assert np.bincount(splits.test_labels).tolist() == [2, 2, 2]
    assert "30 pictures in 3 classes, 24 train and 6 test" in capsys.readouterr().err
    again = load(pictures, image_size=16)
    assert np.array_equal(again.test_images, splits.test_images) and splits.split == again.split
    # the files come in one fixed shuffled order, so --train-limit and --val-split last see every class
    assert len(set(splits.train_labels[:8].tolist())) == 3


def test_colour_keeps_the_colours_and_grey_is_their_luminance(tmp_path):
    root = tmp_path / "two"
    for name in ("bar", "disc"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (30, 20), COLOURS[name]).save(root / name / "flat.png")
        Image.new("RGB", (20, 30), COLOURS[name]).save(root / name / "flat2.png")
    rgb = load(root, image_size=8, colour="rgb")
    assert rgb.train_images.shape[1:] == (8, 8, 3)
    bar = rgb.train_images[rgb.train_labels == 0][0]
    assert np.array_equal(bar[3, 3], COLOURS["bar"])
    grey = load(root, image_size=8)
    red, green, blue = COLOURS["bar"]
    assert grey.train_images.shape[1:] == (8, 8)
    luminance = (299 * red + 587 * green + 114 * blue) / 1000
    assert abs(int(grey.train_images[grey.train_labels == 0][0][3, 3]) - luminance) < 1


def test_train_and_test_sub_folders_are_used_as_given(tmp_path):
    write_picture_folder(tmp_path / "data" / "train", per_class=4)
    write_picture_folder(tmp_path / "data" / "test", per_class=2, seed=1)
    splits = load(tmp_path / "data")
    assert (len(splits.train_labels), len(splits.test_labels)) == (12, 6)
    assert all(name.startswith("test/") for name in splits.split["test"]["files"])
    assert splits.split["method"] == "the folder's train/ and test/ sub-folders"


def test_a_corrupt_picture_is_skipped_with_a_counted_warning_or_refused(pictures, capsys):
    (pictures / "disc" / "broken.png").write_bytes((pictures / "disc" / "000.png").read_bytes()[:60])
    (pictures / "bar" / "notes.txt").write_text("not a picture, and not counted as one")
    splits = load(pictures)
    err = capsys.readouterr().err
    assert "warning: skipped 1 of the 31 pictures" in err and "disc/broken.png: the PNG picture is truncated" in err
    assert len(splits.train_labels) + len(splits.test_labels) == 30
    assert splits.split["skipped"][0]["file"] == "disc/broken.png"
    with pytest.raises(DatasetError, match=r"1 of the 31 pictures in .* cannot be read: disc/broken.png.*"
                                           r"--bad-images skip to train without them"):
        load(pictures, bad_images="fail")


def test_folder_problems_are_named_with_their_fix(tmp_path):
    empty_class = write_picture_folder(tmp_path / "one-empty", per_class=3)
    (empty_class / "zebra").mkdir()
    (empty_class / "zebra" / "readme.txt").write_text("pictures to come")
    cases = {
        r"does not exist; --dataset folder:PATH needs PATH to be a folder": tmp_path / "missing",
        "is a file, not a folder": tmp_path / "file.png",
        "has no class sub-folders": tmp_path / "bare",
        r"holds 1 pictures but no class sub-folders; put each class's pictures in a sub-folder": tmp_path / "loose",
        "holds no pictures: its class folders have no .png": tmp_path / "no-pictures",
        rf"class folder {empty_class / 'zebra'} holds no pictures .*add pictures to it or remove it": empty_class,
        "has one class folder .*needs at least two classes": write_picture_folder(tmp_path / "single", 3, ("disc",)),
    }
    (tmp_path / "file.png").write_bytes(b"")
    (tmp_path / "bare").mkdir()
    (tmp_path / "loose").mkdir()
    save(draw_picture("disc", (12, 12), np.random.default_rng(0)), tmp_path / "loose" / "a.png", "RGB")
    (tmp_path / "no-pictures" / "cat").mkdir(parents=True)
    (tmp_path / "no-pictures" / "dog").mkdir()
    for message, root in cases.items():
        with pytest.raises(DatasetError, match=message):
            load(root)


def test_a_class_needs_two_readable_pictures_to_be_tested_on(tmp_path):
    root = write_picture_folder(tmp_path / "few", per_class=3)
    for name in ("001.png", "002.jpg"):
        (root / "bar" / name).write_bytes(b"\x89PNG\r\n\x1a\n damaged")
    with pytest.raises(DatasetError, match=r"class bar has 1 readable picture; holding out a test part"):
        load(root)


def test_folder_options_are_refused_for_named_datasets():
    with pytest.raises(ConfigError, match=r"--image-size applies to folder datasets .* drop --image-size"):
        TrainConfig(dataset="digits", image_size=8).validate()
    with pytest.raises(ConfigError, match="--colour applies to folder datasets"):
        TrainConfig(dataset="mnist", colour="rgb").validate()
    with pytest.raises(ConfigError, match="--image-size must be positive"):
        folder_config("x", image_size=0)


def test_a_split_file_is_reused_and_checked(pictures, tmp_path):
    first = load(pictures, image_size=12)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps(first.split))
    # a picture added later does not change a split read from the file
    save(draw_picture("disc", (20, 20), np.random.default_rng(5)), pictures / "disc" / "new.png", "RGB")
    reused = load(pictures, image_size=12, split_file=split_file)
    assert reused.split["train"] == first.split["train"] and np.array_equal(reused.test_images, first.test_images)
    with pytest.raises(ConfigError, match=r"made for 12 pixel grey images, not 16 pixel grey ones; pass "
                                          r"--image-size 12 --colour grey"):
        load(pictures, image_size=16, split_file=split_file)
    (pictures / "disc" / "000.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of the 30 pictures that --split-file .* lists are not in"):
        load(pictures, image_size=12, split_file=split_file)
    split_file.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read as a seqvision split file"):
        load(pictures, image_size=12, split_file=split_file)


def epoch_of(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images.clone(), labels.clone()) for images, labels in batches]


@pytest.mark.parametrize("colour", ["grey", "rgb"])
def test_streaming_gives_the_same_batches_as_memory(pictures, monkeypatch, colour):
    in_memory = load(pictures, image_size=10, colour=colour)
    monkeypatch.setenv(STREAM_ENV, "0")
    streamed = load(pictures, image_size=10, colour=colour)
    assert isinstance(streamed.train_images, FileImages) and streamed.image_shape == in_memory.image_shape
    assert np.array_equal(np.asarray(streamed.train_images), in_memory.train_images)
    stats = Normalisation.of(streamed.train_images), Normalisation.of(in_memory.train_images)
    assert stats[0].mean == pytest.approx(stats[1].mean, rel=1e-12) and stats[0].std == pytest.approx(stats[1].std)

    normalisation = stats[1]
    options = dict(shuffle=True, seed=3, max_shift=2, augment=Augmentation(rotate=10, scale=0.1, elastic=5, flip=True))
    memory = InMemoryBatches(in_memory.train_images, in_memory.train_labels, 7, normalisation, **options)
    stream = batches_of(streamed.train_images, streamed.train_labels, 7, normalisation, workers=2, **options)
    assert isinstance(stream, StreamingBatches) and len(stream) == len(memory) == 4
    for epoch in (0, 1):
        memory.set_epoch(epoch)
        stream.set_epoch(epoch)
        for (a, a_labels), (b, b_labels) in zip(epoch_of(memory), epoch_of(stream), strict=True):
            assert torch.equal(a, b) and torch.equal(a_labels, b_labels)
    # resumed in the middle of an epoch, as from a checkpoint: the same remaining batches
    stream.load_state_dict({"epoch": 1, "batches_done": 2})
    rest = zip(epoch_of(stream), epoch_of(memory)[2:], strict=True)
    assert [torch.equal(a, b) for (a, _), (b, _) in rest] == [True, True]

    # the three streams a run uses, with the normalisation each path computes
    config = folder_config(pictures, image_size=10, colour=colour, batch_size=5)
    for a_stream, b_stream in zip(vars(split_batches(config, in_memory)).values(),
                                  vars(split_batches(config, streamed)).values(), strict=True):
        if isinstance(a_stream, Normalisation):
            continue
        for (a, a_labels), (b, b_labels) in zip(epoch_of(a_stream), epoch_of(b_stream), strict=True):
            torch.testing.assert_close(a, b)
            assert torch.equal(a_labels, b_labels)


@pytest.mark.slow
def test_a_grey_run_on_a_folder_splits_evaluates_resumes_and_predicts(pictures, tmp_path):
    out = tmp_path / "run"
    result = seqvision.train(model="lstm", dataset=f"folder:{pictures}", image_size=12, epochs=2, hidden=16,
                             batch_size=8, out=out, progress=False)
    split = json.loads((out / "split.json").read_text())
    assert split["classes"] == sorted(CLASSES) and (split["image_size"], split["colour"]) == (12, "grey")
    assert sorted(split["train"]["files"] + split["test"]["files"]) == sorted(
        path.relative_to(pictures).as_posix() for path in pictures.rglob("*.*"))
    assert json.loads((out / "run.json").read_text())["classes"] == sorted(CLASSES)
    assert evaluate(out) == result.test_metrics
    assert (out / "plots" / "lstm_inside.png").is_file()

    # the folder changes: eval and resume still read the run's split.json
    extra = pictures / "disc" / "later.png"
    save(draw_picture("disc", (16, 16), np.random.default_rng(9)), extra, "RGB")
    assert evaluate(out) == result.test_metrics
    resumed = seqvision.train(resume=out, epochs=3, progress=False)
    assert resumed.epochs_trained == 3 and resumed.test_metrics["test_samples"] == 6

    # predict takes a picture file as the folder dataset made it: the same probabilities as the test pass
    from seqvision.serving.predict import Predictor, predict_files

    predictor = Predictor.open(out)
    test_files = [str(pictures / name) for name in split["test"]["files"]]
    answers = predict_files(predictor, test_files)
    splits = load_dataset(f"folder:{pictures}", None, folder_config(pictures, image_size=12, split_file=out /
                                                                     "split.json"))
    expected = predictor.probabilities(splits.test_images)
    assert np.allclose([answer.prediction.probabilities for answer in answers], expected)


@pytest.mark.slow
def test_an_rgb_run_streamed_from_its_files(pictures, tmp_path, monkeypatch):
    monkeypatch.setenv(STREAM_ENV, "0")
    out = tmp_path / "rgb"
    result = seqvision.train(model="cnn", dataset=f"folder:{pictures}", image_size=12, colour="rgb", epochs=2,
                             batch_size=8, augment_shift=1, out=out, progress=False)
    assert json.loads((out / "run.json").read_text())["image_shape"] == [12, 12, 3]
    assert (out / "plots" / "misclassified.png").is_file()
    assert evaluate(out) == result.test_metrics
    # the same run held in memory ends with the same weights, as the batches are the same
    monkeypatch.delenv(STREAM_ENV)
    again = seqvision.train(model="cnn", dataset=f"folder:{pictures}", image_size=12, colour="rgb", epochs=2,
                            batch_size=8, augment_shift=1, out=tmp_path / "memory", progress=False)
    assert again.test_metrics["test_loss"] == pytest.approx(result.test_metrics["test_loss"], rel=1e-5)


def test_a_moved_folder_is_found_with_data_dir(pictures, tmp_path):
    out = tmp_path / "run"
    result = seqvision.train(model="cnn", dataset=f"folder:{pictures}", image_size=8, epochs=1, out=out,
                             progress=False, report=False)
    moved = shutil.move(pictures, tmp_path / "moved")
    with pytest.raises(DatasetError, match="does not exist"):
        evaluate(out)
    assert evaluate(out, data_dir=moved) == result.test_metrics


def test_a_folder_run_is_named_after_its_last_folder():
    from seqvision.runs.folder import RunFolder

    path = RunFolder.default_path(TrainConfig(dataset="folder:/data/photos/pets/"), root=Path("runs"))
    assert path.parent == Path("runs") and path.name.startswith("lstm-folder-pets-")
