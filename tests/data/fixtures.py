"""Miniature releases of KMNIST, EMNIST and CIFAR-10 in their real formats, written by the tests: gzipped IDX files,
a gzip.zip of transposed gzipped IDX files, a tar.gz of Python pickles. Each comes with the release object that
describes it (its own md5s, counts and a mirror list), so the real loaders and the real download path read it.

Every image carries a mark that shows its orientation: a bright bar along the top, at the left (a transposed or
mirrored image has it elsewhere), and its index in the bottom-right pixel.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvision.data.idx import encode_idx
from seqvision.data.releases import CifarRelease, EmnistSplit, GzIdxRelease
from seqvision.data.sources import PublishedFile

BAR_ROW, BAR_COLUMNS = 1, slice(1, 12)  # the orientation mark: row 1, columns 1..11
COLOUR_ROWS = [3, 5, 7]  # CIFAR fixtures: a pure red, green and blue bar on these rows
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def marked_images(count: int, side: int = 28, channels: int = 0, seed: int = 0) -> np.ndarray:
    """uint8 images (count, side, side[, channels]) of faint noise with the orientation mark and the index."""
    rng = np.random.default_rng(seed)
    shape = (count, side, side, channels) if channels else (count, side, side)
    images = rng.integers(0, 60, shape, dtype=np.uint8)
    images[:, BAR_ROW, BAR_COLUMNS] = 255
    images[:, -1, -1] = np.arange(count, dtype=np.uint8)[:, None] if channels else np.arange(count, dtype=np.uint8)
    return images


def has_upright_mark(images: np.ndarray) -> bool:
    bar = images[:, BAR_ROW, BAR_COLUMNS]
    down_the_left = images[:, BAR_COLUMNS.start + 1:BAR_COLUMNS.stop, BAR_ROW]
    # a transposed image would have the bar down its left side instead
    transposed = (down_the_left == 255).reshape(len(images), -1).all(axis=1)
    return bool((bar == 255).all() and not transposed.any())


def md5_file(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def gz_idx(array: np.ndarray) -> bytes:
    return gzip.compress(encode_idx(array), mtime=0)


@dataclass
class Miniature:
    """A written miniature release: the folder holding it, the release object, and the arrays it should load as."""

    folder: Path
    release: GzIdxRelease | EmnistSplit | CifarRelease
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # train images, labels, test images, labels


def idx_arrays(num_classes: int, counts: tuple[int, int] = (20, 10), seed: int = 0) -> tuple[np.ndarray, ...]:
    train, test = counts
    return (marked_images(train, seed=seed), np.arange(train, dtype=np.uint8) % num_classes,
            marked_images(test, seed=seed + 1), np.arange(test, dtype=np.uint8)[::-1] % num_classes)


def write_kmnist(folder: Path, mirrors: tuple[str, ...] = ()) -> Miniature:
    """The four gzipped IDX files, as codh.rois.ac.jp publishes them."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = idx_arrays(10)
    files = []
    for name, array in zip(IDX_NAMES, arrays, strict=True):
        (folder / f"{name}.gz").write_bytes(gz_idx(array))
        files.append(PublishedFile(f"{name}.gz", md5_file(folder / f"{name}.gz")))
    return Miniature(folder, GzIdxRelease("kmnist", tuple(files), mirrors, (20, 10)), arrays)


def emnist_member_names(split: str) -> list[str]:
    return [f"emnist-{split}-{part}-ubyte.gz"
            for part in ("train-images-idx3", "train-labels-idx1", "test-images-idx3", "test-labels-idx1")]


def write_emnist(folder: Path, mirrors: tuple[str, ...] = ()) -> dict[str, Miniature]:
    """One gzip.zip holding the digits and letters splits under gzip/, each image stored transposed and the
    letters labelled from 1, as NIST publishes them; the loaded arrays are upright and labelled from 0."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "gzip.zip"
    splits = {"digits": (10, 0), "letters": (26, 1)}
    members: dict[str, list[tuple[str, bytes]]] = {}
    expected = {}
    for seed, (split, (num_classes, first_label)) in enumerate(splits.items()):
        arrays = idx_arrays(num_classes, seed=10 * seed)
        stored = (arrays[0].transpose(0, 2, 1), arrays[1] + first_label,
                  arrays[2].transpose(0, 2, 1), arrays[3] + first_label)
        members[split] = [(name, gz_idx(np.ascontiguousarray(array)))
                          for name, array in zip(emnist_member_names(split), stored, strict=True)]
        expected[split] = arrays
    with zipfile.ZipFile(archive, "w") as out:
        for split_members in members.values():
            for name, content in split_members:
                out.writestr(f"gzip/{name}", content)
    published = PublishedFile("gzip.zip", md5_file(archive))
    return {split: Miniature(folder, EmnistSplit(
        f"emnist-{split}", published,
        tuple(PublishedFile(name, hashlib.md5(content, usedforsecurity=False).hexdigest())
              for name, content in members[split]),
        mirrors, (20, 10), splits[split][0], splits[split][1]), expected[split]) for split in splits}


def extract_emnist(zip_path: Path, folder: Path, split: str, gunzip: bool) -> None:
    """The split's four files from the zip into `folder`, as a user unpacks them (gzipped, or also gunzipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        for name in emnist_member_names(split):
            content = archive.read(f"gzip/{name}")
            if gunzip:
                (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress(content))
            else:
                (folder / name).write_bytes(content)


def cifar_batch(images: np.ndarray, labels: np.ndarray, title: bytes) -> bytes:
    """A CIFAR-10 batch as the 2009 release pickled it: byte-string keys, b"data" N x 3072 uint8 of the red,
    then green, then blue plane, each row by row, and b"labels" a list of ints."""
    planes = [images[..., channel].reshape(len(images), -1) for channel in range(3)]
    batch = {b"batch_label": title, b"labels": [int(label) for label in labels],
             b"data": np.concatenate(planes, axis=1), b"filenames": [b"image_%d.png" % i for i in range(len(images))]}
    # Protocol 3 keeps bytes as bytes and names globals in text; the release names numpy's module as it was then.
    return pickle.dumps(batch, protocol=3).replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


class RunsCode:
    """What a malicious pickle holds: unpickling it calls os.system."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (self.command,)


def malicious_batch(marker: Path) -> bytes:
    """A pickle shaped like a batch whose loading would create `marker` through os.system."""
    return pickle.dumps({b"data": RunsCode(f"touch {marker}"), b"labels": []}, protocol=3)


def write_cifar(folder: Path, mirrors: tuple[str, ...] = (), replace: dict[str, bytes] | None = None,
                per_batch: int = 6, test_count: int = 4) -> Miniature:
    """cifar-10-python.tar.gz with two training batches of `per_batch` images, a test batch of `test_count` and
    batches.meta; `replace` swaps the content of named members (to plant a malicious batch)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_images = marked_images(2 * per_batch, 32, 3, seed=5)
    test_images = marked_images(test_count, 32, 3, seed=6)
    for images in (train_images, test_images):
        images[:, COLOUR_ROWS, BAR_COLUMNS] = np.eye(3, dtype=np.uint8)[:, None, :] * 255
    train_labels, test_labels = np.arange(2 * per_batch) % 10, (np.arange(test_count) * 7 + 9) % 10
    members = {
        "cifar-10-batches-py/data_batch_1": cifar_batch(train_images[:per_batch], train_labels[:per_batch],
                                                        b"training batch 1 of 2"),
        "cifar-10-batches-py/data_batch_2": cifar_batch(train_images[per_batch:], train_labels[per_batch:],
                                                        b"training batch 2 of 2"),
        "cifar-10-batches-py/test_batch": cifar_batch(test_images, test_labels, b"testing batch 1 of 1"),
        "cifar-10-batches-py/batches.meta": pickle.dumps({b"label_names": [b"airplane"], b"num_vis": 3072},
                                                         protocol=3),
    }
    members.update(replace or {})
    archive = folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            out.addfile(info, io.BytesIO(content))
    batches = [PublishedFile(name, hashlib.md5(content, usedforsecurity=False).hexdigest())
               for name, content in members.items() if not name.endswith(".meta")]
    release = CifarRelease("cifar10", PublishedFile(archive.name, md5_file(archive)), tuple(batches[:2]), batches[2],
                           mirrors, (2 * per_batch, test_count))
    return Miniature(folder, release, (train_images, train_labels, test_images, test_labels))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `folder`; yields its base URL (ending in /), stopped afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
