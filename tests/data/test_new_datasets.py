"""KMNIST, EMNIST and CIFAR-10 read from miniature releases in their real formats (tests/data/fixtures.py): found in
a data folder, downloaded from a real HTTP server on 127.0.0.1 and verified, refused when damaged, and CIFAR-10's
pickles loaded without running anything they name."""

import dataclasses
import gzip
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from seqvision.data import dataset_names, get_dataset
from seqvision.data.releases import unpickle_batch
from seqvision.data.sources import cache_dir
from seqvision.errors import DatasetError

from .fixtures import (
    COLOUR_ROWS,
    IDX_NAMES,
    Miniature,
    extract_emnist,
    has_upright_mark,
    malicious_batch,
    served,
    write_cifar,
    write_emnist,
    write_kmnist,
)


def assert_loads_as(splits, miniature: Miniature) -> None:
    for loaded, expected in zip((splits.train_images, splits.train_labels, splits.test_images, splits.test_labels),
                                miniature.arrays, strict=True):
        np.testing.assert_array_equal(loaded, expected)
    assert splits.train_images.dtype == np.uint8 and splits.train_labels.dtype == np.int64
    assert has_upright_mark(splits.train_images) and has_upright_mark(splits.test_images)


def test_the_registry_names_shapes_and_classes():
    assert {"kmnist", "emnist-digits", "emnist-letters", "cifar10"} <= set(dataset_names())
    assert get_dataset("kmnist").classes == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    letters = get_dataset("emnist-letters")
    assert letters.num_classes == 26 and letters.classes[0] == "A/a" and letters.classes[-1] == "Z/z"
    assert get_dataset("emnist-digits").classes == tuple("0123456789")
    cifar = get_dataset("cifar10")
    assert cifar.image_shape == (32, 32, 3)
    assert cifar.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    mirrored = {name for name in dataset_names() if get_dataset(name).mirror_invariant}
    assert {"cifar10", "fashion-mnist"} <= mirrored
    assert not mirrored & {"mnist", "digits", "kmnist", "emnist-digits", "emnist-letters"}


@pytest.mark.parametrize("layout", ["root/name", "folder itself"])
def test_kmnist_from_a_data_folder(tmp_path, layout):
    root = tmp_path / "data"
    miniature = write_kmnist(root / "kmnist" if layout == "root/name" else root)
    splits = miniature.release.load(root)
    assert_loads_as(splits, miniature)
    assert splits.source == str(miniature.folder)


def test_kmnist_gunzipped_files_are_checked_by_their_size(tmp_path):
    miniature = write_kmnist(tmp_path / "published")
    folder = tmp_path / "data" / "kmnist"
    folder.mkdir(parents=True)
    for name in IDX_NAMES:
        (folder / name).write_bytes(gzip.decompress((miniature.folder / f"{name}.gz").read_bytes()))
    assert_loads_as(miniature.release.load(tmp_path / "data"), miniature)

    from seqvision.data.idx import write_idx

    write_idx(folder / "train-images-idx3-ubyte", miniature.arrays[0][:19])
    write_idx(folder / "train-labels-idx1-ubyte", miniature.arrays[1][:19])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte holds 19 images where the release has 20"):
        miniature.release.load(tmp_path / "data")


def test_kmnist_file_with_another_md5_is_refused(tmp_path):
    miniature = write_kmnist(tmp_path / "data" / "kmnist")
    labels = miniature.folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-1] + b"\x03", mtime=0))
    published = miniature.release.files[1].md5
    with pytest.raises(DatasetError, match=rf"train-labels-idx1-ubyte.gz has md5 [0-9a-f]{{32}} but the published "
                                           rf"train-labels-idx1-ubyte.gz has {published}: the file is damaged"):
        miniature.release.load(tmp_path / "data")


def test_emnist_from_the_zip_upright_and_labelled_from_zero(tmp_path):
    miniatures = write_emnist(tmp_path / "data" / "emnist")
    digits = miniatures["digits"].release.load(tmp_path / "data")
    letters = miniatures["letters"].release.load(tmp_path / "data")
    assert_loads_as(digits, miniatures["digits"])
    assert_loads_as(letters, miniatures["letters"])
    assert letters.train_labels.min() == 0 and letters.num_classes == 26
    assert letters.source == str(miniatures["letters"].folder / "gzip.zip")


@pytest.mark.parametrize("gunzip", [False, True], ids=["gz files", "gunzipped files"])
def test_emnist_extracted_files(tmp_path, gunzip):
    miniatures = write_emnist(tmp_path / "download")
    extract_emnist(tmp_path / "download" / "gzip.zip", tmp_path / "data" / "emnist", "letters", gunzip)
    splits = miniatures["letters"].release.load(tmp_path / "data")
    assert_loads_as(splits, miniatures["letters"])
    assert splits.source == str(tmp_path / "data" / "emnist")


def test_emnist_extracted_gz_file_with_another_md5_is_refused(tmp_path):
    miniatures = write_emnist(tmp_path / "download")
    folder = tmp_path / "data" / "emnist"
    extract_emnist(tmp_path / "download" / "gzip.zip", folder, "digits", gunzip=False)
    test_labels = folder / "emnist-digits-test-labels-idx1-ubyte.gz"
    test_labels.write_bytes(gzip.compress(gzip.decompress(test_labels.read_bytes()), mtime=1))
    with pytest.raises(DatasetError, match=r"emnist-digits-test-labels-idx1-ubyte.gz has md5 [0-9a-f]{32} but the "
                                           r"published"):
        miniatures["digits"].release.load(tmp_path / "data")


def test_cifar_from_the_archive_in_colour_channels_last(tmp_path):
    miniature = write_cifar(tmp_path / "data" / "cifar10")
    splits = miniature.release.load(tmp_path / "data")
    assert splits.train_images.shape == (12, 32, 32, 3) and splits.test_images.shape == (4, 32, 32, 3)
    assert splits.image_shape == (32, 32, 3)
    assert_loads_as(splits, miniature)
    # The fixture's red, green and blue bars come out in channels 0, 1, 2.
    for channel, row in enumerate(COLOUR_ROWS):
        expected = np.zeros(3, np.uint8)
        expected[channel] = 255
        assert (splits.train_images[:, row, 1:12] == expected).all()


def test_cifar_from_extracted_batches(tmp_path):
    miniature = write_cifar(tmp_path / "download")
    folder = tmp_path / "data" / "cifar10"
    with tarfile.open(miniature.folder / "cifar-10-python.tar.gz") as archive:
        archive.extractall(folder, filter="data")
    assert_loads_as(miniature.release.load(tmp_path / "data"), miniature)

    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x03}q\x00.")
    with pytest.raises(DatasetError, match=r"test_batch has md5 [0-9a-f]{32} but the published"):
        miniature.release.load(tmp_path / "data")


def test_a_malicious_cifar_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "code-ran"
    planted = malicious_batch(marker)
    # The planted batch does run code under a plain unpickler: the refusal below is what keeps it from running.
    pickle.loads(planted)
    assert marker.exists()
    marker.unlink()

    miniature = write_cifar(tmp_path / "data" / "cifar10", replace={"cifar-10-batches-py/data_batch_2": planted})
    with pytest.raises(DatasetError, match=r"cifar-10-python.tar.gz:cifar-10-batches-py/data_batch_2 is not a "
                                           r"CIFAR-10 batch: it asks to load (posix|os)\.system, which a batch never "
                                           r"holds and which could run code"):
        miniature.release.load(tmp_path / "data")
    assert not marker.exists()


@pytest.mark.parametrize(("content", "message"), [
    (pickle.dumps({b"data": print}, protocol=3), r"planted is not a CIFAR-10 batch: it asks to load builtins\.print"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, protocol=3),
     r"planted is not a CIFAR-10 batch: it lacks b'data' as N x 3072 uint8 pixels"),
    (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=3),
     r"planted is not a CIFAR-10 batch: it lacks"),
    (b"\x80\x03}q\x00(", r"planted is not a readable pickle"),
])
def test_batches_that_are_not_cifar_batches_are_refused(content, message):
    with pytest.raises(DatasetError, match=message):
        unpickle_batch(content, "planted")


WRITERS = {
    "kmnist": lambda folder: write_kmnist(folder),
    "emnist-letters": lambda folder: write_emnist(folder)["letters"],
    "cifar10": lambda folder: write_cifar(folder),
}
FIRST_DOWNLOAD = {"kmnist": "train-images-idx3-ubyte.gz", "emnist-letters": "gzip.zip",
                  "cifar10": "cifar-10-python.tar.gz"}
CACHE_FOLDER = {"kmnist": "kmnist", "emnist-letters": "emnist", "cifar10": "cifar10"}


def partial_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.startswith(".")]


@pytest.mark.parametrize("dataset", WRITERS)
def test_download_from_a_local_mirror_is_verified_and_cached(tmp_path, dataset):
    miniature = WRITERS[dataset](tmp_path / "served")
    with served(miniature.folder) as url:
        splits = dataclasses.replace(miniature.release, mirrors=(url,)).load(None)
    assert_loads_as(splits, miniature)
    cache = cache_dir(CACHE_FOLDER[dataset])
    assert (cache / FIRST_DOWNLOAD[dataset]).is_file() and not partial_files(cache)
    # Once cached, no mirror is needed.
    assert_loads_as(dataclasses.replace(miniature.release, mirrors=()).load(None), miniature)


@pytest.mark.parametrize("dataset", WRITERS)
def test_a_mirror_serving_another_file_is_refused_and_leaves_nothing(tmp_path, dataset):
    miniature = WRITERS[dataset](tmp_path / "good")
    other = shutil.copytree(miniature.folder, tmp_path / "other")
    for path in other.iterdir():
        path.write_bytes(path.read_bytes() + b"\x00")  # the same name, some other content
    name = FIRST_DOWNLOAD[dataset]
    published = miniature.release.files[0].md5 if dataset == "kmnist" else miniature.release.archive.md5
    cache = cache_dir(CACHE_FOLDER[dataset])
    with served(other) as other_url:
        with pytest.raises(DatasetError, match=rf"cannot find the {dataset} dataset(.|\n)*downloading failed, every "
                                               rf"mirror failed:\n  http://127.0.0.1:\d+/{name}: md5 of the file is "
                                               rf"[0-9a-f]{{32}}, not the published {published}"):
            dataclasses.replace(miniature.release, mirrors=(other_url,)).load(None)
        assert not (cache / name).exists() and not partial_files(cache)

        with served(miniature.folder) as good_url:
            splits = dataclasses.replace(miniature.release, mirrors=(other_url, good_url)).load(None)
    assert_loads_as(splits, miniature)
    assert not partial_files(cache)


def test_both_emnist_splits_share_one_download(tmp_path):
    miniatures = write_emnist(tmp_path / "served")
    with served(miniatures["digits"].folder) as url:
        dataclasses.replace(miniatures["digits"].release, mirrors=(url,)).load(None)
    assert_loads_as(dataclasses.replace(miniatures["letters"].release, mirrors=()).load(None), miniatures["letters"])


@pytest.mark.slow
def test_a_short_colour_training_on_cifar_with_flips(tmp_path, monkeypatch):
    from seqvision.training.train import train_model

    miniature = write_cifar(tmp_path / "data" / "cifar10", per_batch=30, test_count=20)
    # The registered cifar10, described by the miniature's md5s and counts instead of the published ones.
    monkeypatch.setattr("seqvision.data.datasets.CIFAR10", miniature.release)
    run = train_model(model="lstm", dataset="cifar10", data_dir=tmp_path / "data", epochs=1, hidden=8, batch_size=16,
                      val_fraction=0.25, augment_flip=True, augment_rotate=10, augment_shift=2, progress=False,
                      out=tmp_path / "run")
    assert run.epochs_trained == 1
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert run.run.read_info()["image_shape"] == [32, 32, 3]
