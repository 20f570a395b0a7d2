"""Dataset releases beyond MNIST's: KMNIST's gzipped IDX files, EMNIST's zip of gzipped IDX files, and CIFAR-10's
tar.gz of pickled batches. Each is read from the files as published, checked against their published md5s, or
from the files users extract from them.

CIFAR-10's batches are Python pickles, and loading a pickle can run any code it names. They are read with an
unpickler that builds only what those files hold (dicts, lists, bytes, numbers and numpy arrays) and refuses
any other object before it is created.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvision.data.idx import parse_idx, read_idx
from seqvision.data.sources import ExtractedFile, PublishedFile, locate_layout, verify_published
from seqvision.data.splits import ImageSplits
from seqvision.errors import DatasetError


def idx_pair(images: np.ndarray, labels: np.ndarray, origins: Sequence[object], num_classes: int,
             count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """IDX images (N, H, W) as uint8 and labels (N,) as int64, refused unless they pair up, every label is a
    class, and (given `count`) the release's number of images is there."""
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{origins[0]} {images.shape} and {origins[1]} {labels.shape} do not pair up "
                           "as (N, H, W) images with N labels.")
    return images.astype(np.uint8), checked_labels(labels, origins, num_classes, count)


def checked_labels(labels: np.ndarray, origins: Sequence[object], num_classes: int,
                   count: int | None = None) -> np.ndarray:
    labels = labels.astype(np.int64)
    outside = labels[(labels < 0) | (labels >= num_classes)]
    if len(outside):
        raise DatasetError(f"{origins[1]} has label {outside[0]}, outside 0..{num_classes - 1}.")
    if count is not None and len(labels) != count:
        raise DatasetError(f"{origins[0]} holds {len(labels)} images where the release has {count}: the file is "
                           "truncated or belongs to another dataset; replace it.")
    return labels


def gunzip(content: bytes, origin: str) -> bytes:
    try:
        return gzip.decompress(content)
    except (gzip.BadGzipFile, zlib.error, EOFError) as error:
        raise DatasetError(f"{origin} is not a valid gzip file ({error}); replace the archive.") from None


@dataclass(frozen=True)
class GzIdxRelease:
    """A dataset published as four gzipped IDX files (train images, train labels, test images, test labels) with
    the md5 of each .gz, as KMNIST is. Gunzipped copies have no published md5: their sizes are checked instead."""

    name: str
    files: tuple[PublishedFile, PublishedFile, PublishedFile, PublishedFile]
    mirrors: tuple[str, ...]
    counts: tuple[int, int]  # training and test images in the release
    num_classes: int = 10

    def load(self, data_dir: Path | None) -> ImageSplits:
        gunzipped = [ExtractedFile(published.name.removesuffix(".gz")) for published in self.files]
        layout, paths = locate_layout(self.name, [self.files, gunzipped], self.mirrors, data_dir)
        if layout == 0:
            paths = [verify_published(path, published) for path, published in zip(paths, self.files, strict=True)]
        arrays = [read_idx(path) for path in paths]
        train = idx_pair(arrays[0], arrays[1], paths[0:2], self.num_classes, self.counts[0])
        test = idx_pair(arrays[2], arrays[3], paths[2:4], self.num_classes, self.counts[1])
        return ImageSplits(self.name, *train, *test, self.num_classes, str(paths[0].parent))


EMNIST_FOLDER = "emnist"  # every EMNIST split comes from the one gzip.zip, downloaded once


@dataclass(frozen=True)
class EmnistSplit:
    """One split of EMNIST ("digits", "letters"): from the published gzip.zip, or from its four files of the split
    as extracted: gzipped (each checked against its md5) or gunzipped (their sizes checked).

    EMNIST stores every image transposed relative to MNIST; they are turned upright here. Labels in the files
    start at `first_label` (1 for letters: a/A); they become 0-based classes."""

    name: str
    archive: PublishedFile
    members: tuple[PublishedFile, PublishedFile, PublishedFile, PublishedFile]  # as named in the zip's gzip/ folder
    mirrors: tuple[str, ...]
    counts: tuple[int, int]
    num_classes: int
    first_label: int = 0

    def load(self, data_dir: Path | None) -> ImageSplits:
        gunzipped = [ExtractedFile(member.name.removesuffix(".gz")) for member in self.members]
        layout, paths = locate_layout(self.name, [(self.archive,), self.members, gunzipped], self.mirrors, data_dir,
                                      folder_name=EMNIST_FOLDER)
        if layout == 0:
            archive = verify_published(paths[0], self.archive)
            origins = [f"{archive}:gzip/{member.name}" for member in self.members]
            contents = read_zip_members(archive, [f"gzip/{member.name}" for member in self.members])
            arrays = [parse_idx(gunzip(content, origin), origin) for content, origin in zip(contents, origins,
                                                                                           strict=True)]
            source = str(archive)
        else:
            if layout == 1:
                paths = [verify_published(path, member) for path, member in zip(paths, self.members, strict=True)]
            origins, arrays, source = paths, [read_idx(path) for path in paths], str(paths[0].parent)
        parts = []
        for images, labels, names, count in ((arrays[0], arrays[1], origins[0:2], self.counts[0]),
                                             (arrays[2], arrays[3], origins[2:4], self.counts[1])):
            images, labels = idx_pair(images, labels.astype(np.int64) - self.first_label, names, self.num_classes,
                                      count)
            # (N, W, H) as stored -> (N, H, W), so that characters read upright as MNIST's digits do
            parts += [np.ascontiguousarray(images.transpose(0, 2, 1)), labels]
        return ImageSplits(self.name, *parts, self.num_classes, source)


def read_zip_members(path: Path, names: Sequence[str]) -> list[bytes]:
    try:
        with zipfile.ZipFile(path) as archive:
            return [archive.read(name) for name in names]
    except KeyError as error:
        raise DatasetError(f"{path} has no {error.args[0]}; it is not the release it is named after. Replace it."
                           ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise DatasetError(f"{path} is not a readable zip archive ({error}); delete it and download it again."
                           ) from None


@dataclass(frozen=True)
class CifarRelease:
    """CIFAR-10's "python version": a tar.gz of pickled batches, each a dict whose b"data" holds N x 3072 uint8
    (1024 red, then green, then blue values, each plane row by row) and b"labels" N class numbers. Read from the
    archive, or from its extracted batch files (each checked against its md5). Images come out (N, 32, 32, 3)."""

    name: str
    archive: PublishedFile
    train_batches: tuple[PublishedFile, ...]  # named by their path in the archive (cifar-10-batches-py/...)
    test_batch: PublishedFile
    mirrors: tuple[str, ...]
    counts: tuple[int, int]
    num_classes: int = 10

    def load(self, data_dir: Path | None) -> ImageSplits:
        batches = (*self.train_batches, self.test_batch)
        layout, paths = locate_layout(self.name, [(self.archive,), batches], self.mirrors, data_dir)
        if layout == 0:
            archive = verify_published(paths[0], self.archive)
            origins = [f"{archive}:{batch.name}" for batch in batches]
            contents = read_tar_members(archive, [batch.name for batch in batches])
            source = str(archive)
        else:
            origins = [verify_published(path, batch) for path, batch in zip(paths, batches, strict=True)]
            contents = [read_file(path) for path in origins]
            source = str(paths[0].parent)
        loaded = [unpickle_batch(content, origin) for content, origin in zip(contents, origins, strict=True)]
        train_images = np.concatenate([images for images, _ in loaded[:-1]])
        train_labels = np.concatenate([labels for _, labels in loaded[:-1]])
        train_labels = checked_labels(train_labels, (f"{source} training batches",) * 2, self.num_classes,
                                      self.counts[0])
        test_labels = checked_labels(loaded[-1][1], (origins[-1],) * 2, self.num_classes, self.counts[1])
        return ImageSplits(self.name, train_images, train_labels, loaded[-1][0], test_labels, self.num_classes,
                           source)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from None


def read_tar_members(path: Path, names: Sequence[str]) -> list[bytes]:
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.name in names and member.isfile():
                    found[member.name] = archive.extractfile(member).read()
    except (tarfile.TarError, zlib.error, EOFError, OSError) as error:
        raise DatasetError(f"{path} is not a readable tar.gz archive ({error}); delete it and download it again."
                           ) from None
    missing = [name for name in names if name not in found]
    if missing:
        raise DatasetError(f"{path} has no {missing[0]}; it is not the release it is named after. Replace it.")
    return [found[name] for name in names]


CIFAR_SIDE = 32
# numpy's array-unpickling function, wherever this numpy keeps it; pickles name it by the module of their day.
_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
# Everything a CIFAR-10 batch names besides built-in containers and values: how to rebuild a numpy array.
BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch, and refuses a pickle that names any callable other than BATCH_GLOBALS."""

    def __init__(self, content: bytes, origin: object) -> None:
        # The batches were pickled by Python 2: its byte strings load as bytes, as the array data must.
        super().__init__(io.BytesIO(content), encoding="bytes")
        self.origin = origin

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in BATCH_GLOBALS:
            raise DatasetError(f"{self.origin} is not a CIFAR-10 batch: it asks to load {module}.{name}, which a "
                               "batch never holds and which could run code; nothing was loaded from it. Delete "
                               "it and download the release again.")
        return BATCH_GLOBALS[(module, name)]


def unpickle_batch(content: bytes, origin: object) -> tuple[np.ndarray, np.ndarray]:
    """One batch's images (N, 32, 32, 3) uint8, channels last, and its labels (N,)."""
    try:
        batch = BatchUnpickler(content, origin).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        raise DatasetError(f"{origin} is not a readable pickle ({error!r}); delete it and download it again."
                           ) from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    plane = CIFAR_SIDE * CIFAR_SIDE
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3 * plane
            and isinstance(labels, list) and len(labels) == len(data) and all(type(x) is int for x in labels)):
        raise DatasetError(f"{origin} is not a CIFAR-10 batch: it lacks b'data' as N x {3 * plane} uint8 pixels "
                           "with N integer b'labels'. Replace it.")
    # (N, 3072) -> (N, 3, 32, 32) colour planes -> (N, 32, 32, 3) channels last
    images = data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64)
