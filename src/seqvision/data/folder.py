"""Folder datasets, `--dataset folder:PATH`: the user's own pictures, one sub-folder per class.

    PATH/cat/*.jpg, PATH/dog/*.png, ...                 class names: the sub-folder names, sorted
    PATH/train/cat/..., PATH/test/cat/..., ...          an official train/test split, used as it is

Pictures (PNG, JPEG, BMP, GIF, WebP; sub-folders of a class folder count too) may have any size and colour mode.
Each is decoded by the code `seqvision predict` uses (seqvision.data.images.prepare), converted to greyscale or RGB
(`--colour`) and resized whole to `--image-size` (aspect ratio not kept: see images.resized). Without train/ and
test/, a seeded fifth of each class is held out as the test set (seed 0, whatever the training seed, as for the
digits dataset). The files are listed in one fixed shuffled order, so `--train-limit` and `--val-split last` take
every class.

The split is written into the run folder as split.json (relative paths, labels, class names, image size,
colour): the run folder, because the picture folder may be read-only or shared by many runs. `--split-file`
reuses a split file; eval, resume and export read the run's own, so they see the files it was trained on even
after the folder changes.

Every picture is decoded once before training: unreadable or corrupt files are found then (skipped with a
warning that counts them, or refused with `--bad-images fail`), never halfway through an epoch. A folder whose
decoded images fit under 2 GiB ($SEQVISION_STREAM_ABOVE_MIB) is held in memory; a larger one is streamed from
its files by DataLoader workers (seqvision.data.streaming) in the same batches.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqvision.atomic import write_json_atomic
from seqvision.config import DEFAULTS, FOLDER_PREFIX, TrainConfig
from seqvision.data.images import prepare
from seqvision.data.registry import DatasetSpec
from seqvision.data.splits import ImageSplits
from seqvision.data.streaming import FOLDER_MAX_PIXELS, STREAM_WORKERS, FileImages, unreadable_because
from seqvision.errors import ConfigError, DatasetError, ImageError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
SPLIT_FILE = "split.json"
SPLIT_FORMAT = 1
TEST_FRACTION = 0.2
SPLIT_SEED = 0  # fixed, so every run of any seed is tested on the same pictures
STREAM_ABOVE_MIB = 2048
STREAM_ENV = "SEQVISION_STREAM_ABOVE_MIB"
# Pictures decoded per worker task in the check before training, and the size from which workers pay off.
CHECK_CHUNK = 256
CHECK_WORKERS_FROM = 2048
SHOWN_PROBLEMS = 3


def is_folder_dataset(name: str) -> bool:
    return name.startswith(FOLDER_PREFIX)


@dataclass(frozen=True)
class FolderOptions:
    """How a folder's pictures become images: the TrainConfig options that apply to folder datasets."""

    image_size: int = DEFAULTS.image_size
    colour: str = DEFAULTS.colour
    split_file: str | None = None
    bad_images: str = DEFAULTS.bad_images

    @classmethod
    def of(cls, config: TrainConfig | None) -> FolderOptions:
        if config is None:
            return cls()
        return cls(config.image_size, config.colour, config.split_file, config.bad_images)

    @property
    def image_shape(self) -> tuple[int, ...]:
        side = self.image_size
        return (side, side, 3) if self.colour == "rgb" else (side, side)


@dataclass(frozen=True)
class FolderSplit:
    """Which pictures a run trains and tests on: relative paths (POSIX) and labels, and the class names."""

    classes: tuple[str, ...]
    train_files: list[str]
    train_labels: list[int]
    test_files: list[str]
    test_labels: list[int]
    method: str
    skipped: tuple[dict[str, str], ...] = ()

    def record(self, root: Path, options: FolderOptions) -> dict[str, Any]:
        """The content of split.json."""
        return {"format": SPLIT_FORMAT, "folder": str(root.resolve()), "classes": list(self.classes),
                "image_size": options.image_size, "colour": options.colour, "method": self.method,
                "train": {"files": self.train_files, "labels": self.train_labels},
                "test": {"files": self.test_files, "labels": self.test_labels}, "skipped": list(self.skipped)}


@dataclass(frozen=True)
class FolderSplits(ImageSplits):
    """A folder dataset in memory (arrays) or on disk (seqvision.data.streaming.FileImages), with its split."""

    split: dict[str, Any] = dataclasses.field(default_factory=dict)


def folder_spec(name: str, config: TrainConfig | None = None) -> DatasetSpec:
    """The DatasetSpec of `folder:PATH` under the config's folder options; reads only the class folders' names."""
    root, options = Path(name.removeprefix(FOLDER_PREFIX)).expanduser(), FolderOptions.of(config)
    classes = (tuple(read_split_file(Path(options.split_file), options)["classes"]) if options.split_file
               else class_names(root))
    return DatasetSpec(name, options.image_shape, len(classes), f"your pictures in {root}",
                       lambda data_dir: load_folder(Path(data_dir) if data_dir is not None else root, options, name),
                       box_fraction=1.0, classes=classes)


def class_names(root: Path) -> tuple[str, ...]:
    _check_folder(root)
    layout = _split_layout(root)
    return tuple(folder.name for folder in _class_folders(layout[0] if layout else root))


def load_folder(root: Path, options: FolderOptions, name: str | None = None) -> FolderSplits:
    """Check and split the folder's pictures, and hold them in memory or stream them, whichever their size allows."""
    _check_folder(root)
    if options.split_file:
        split = _split_from_file(root, options)
        found = [*zip(split.train_files, split.train_labels, strict=True),
                 *zip(split.test_files, split.test_labels, strict=True)]
    else:
        split, found = None, _listed_pictures(root)
    stream = _estimated_bytes(len(found), options.image_shape) > _stream_above()
    checked = _check_pictures(root, [file for file, _ in found], options, keep_pixels=not stream)
    readable = [(file, label) for (file, label), ok in zip(found, checked.readable, strict=True) if ok]
    split = _without_unreadable(split, checked) if split else _hold_out(root, class_names(root), readable)
    split = dataclasses.replace(split, skipped=checked.skipped)
    position = {file: index for index, (file, _) in enumerate(found)}
    parts = []
    for files, labels in ((split.train_files, split.train_labels), (split.test_files, split.test_labels)):
        at = np.array([position[file] for file in files], dtype=np.int64)
        images = (FileImages(root, files, options.image_shape, checked.sums[at], checked.squares[at]) if stream
                  else checked.pixels[at])
        parts += [images, np.asarray(labels, dtype=np.int64)]
    _announce(root, split, options, stream)
    return FolderSplits(name or f"{FOLDER_PREFIX}{root}", *parts, len(split.classes), str(root),
                        split=split.record(root, options))


def write_split_file(splits: ImageSplits, run_dir: Path) -> None:
    """Write a folder dataset's split.json into its run folder; named datasets have their official split."""
    if isinstance(splits, FolderSplits):
        write_json_atomic(Path(run_dir) / SPLIT_FILE, splits.split)


def with_run_split(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """The config to reload a run's dataset with: for a folder dataset, the run's own split.json."""
    path = Path(run_dir) / SPLIT_FILE
    if is_folder_dataset(config.dataset) and path.is_file():
        return dataclasses.replace(config, split_file=str(path))
    return config


def read_split_file(path: Path, options: FolderOptions) -> dict[str, Any]:
    """A split file's content, checked against the image size and colour asked for."""
    try:
        record = json.loads(path.read_text())
        classes, train, test = record["classes"], record["train"], record["test"]
        sizes = {len(train["files"]), len(train["labels"])}, {len(test["files"]), len(test["labels"])}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"--split-file {path} cannot be read as a seqvision split file ({error}); give the "
                          "split.json of a run folder, or leave --split-file out to split the folder afresh."
                          ) from None
    if record.get("format") != SPLIT_FORMAT or any(len(size) != 1 for size in sizes) or not classes:
        raise ConfigError(f"--split-file {path} is not a split file of format {SPLIT_FORMAT} with as many labels as "
                          "files; give the split.json of a run folder.")
    if (record.get("image_size"), record.get("colour")) != (options.image_size, options.colour):
        raise ConfigError(f"--split-file {path} was made for {record.get('image_size')} pixel {record.get('colour')} "
                          f"images, not {options.image_size} pixel {options.colour} ones; pass --image-size "
                          f"{record.get('image_size')} --colour {record.get('colour')} to reuse it.")
    return record


def _split_from_file(root: Path, options: FolderOptions) -> FolderSplit:
    record = read_split_file(Path(options.split_file or ""), options)
    listed = [*record["train"]["files"], *record["test"]["files"]]
    missing = [file for file in listed if not (root / file).is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} of the {len(listed)} pictures that --split-file {options.split_file} "
                           f"lists are not in {root} ({', '.join(missing[:SHOWN_PROBLEMS])}); point --dataset "
                           "folder:PATH at the folder the split was made from.")
    return FolderSplit(tuple(record["classes"]), list(record["train"]["files"]), list(record["train"]["labels"]),
                       list(record["test"]["files"]), list(record["test"]["labels"]), str(record.get("method", "")))


def _without_unreadable(split: FolderSplit, checked: CheckedPictures) -> FolderSplit:
    unreadable = {problem["file"] for problem in checked.skipped}
    train = [(f, label) for f, label in zip(split.train_files, split.train_labels, strict=True) if f not in unreadable]
    test = [(f, label) for f, label in zip(split.test_files, split.test_labels, strict=True) if f not in unreadable]
    return dataclasses.replace(split, train_files=[f for f, _ in train], train_labels=[label for _, label in train],
                               test_files=[f for f, _ in test], test_labels=[label for _, label in test])


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"folder dataset {root} does not exist; --dataset folder:PATH needs PATH to be a folder "
                           "with one sub-folder of pictures per class.")
    if not root.is_dir():
        raise DatasetError(f"folder dataset {root} is a file, not a folder; --dataset folder:PATH needs PATH to be a "
                           "folder with one sub-folder of pictures per class.")


def _split_layout(root: Path) -> tuple[Path, Path] | None:
    """(train, test) folders when the folder brings its own split."""
    train, test = root / "train", root / "test"
    return (train, test) if train.is_dir() and test.is_dir() else None


def _class_folders(folder: Path) -> list[Path]:
    folders = sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        loose = len(_pictures_in(folder))
        holds = f"holds {loose} pictures but" if loose else "has"
        raise DatasetError(f"{folder} {holds} no class sub-folders; put each class's pictures in a sub-folder named "
                           f"after the class ({folder / 'cat'}/*.png, {folder / 'dog'}/*.png, ...).")
    return folders


def _pictures_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in PICTURE_SUFFIXES and path.is_file()
                  and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def _listed_pictures(root: Path) -> list[tuple[str, int]]:
    """Every picture as (path relative to root, label), class by class; refuses empty class folders."""
    layout = _split_layout(root)
    tops = layout or (root,)
    names = [folder.name for folder in _class_folders(tops[0])]
    found, empty = [], []
    for top in tops:
        folders = _class_folders(top)
        if [folder.name for folder in folders] != names:
            raise DatasetError(f"{tops[0]} and {tops[1]} must hold the same class folders; they hold {names} and "
                               f"{[folder.name for folder in folders]}.")
        for label, folder in enumerate(folders):
            pictures = _pictures_in(folder)
            found += [(path.relative_to(root).as_posix(), label) for path in pictures]
            empty += [] if pictures else [folder]
    if not found:
        raise DatasetError(f"{root} holds no pictures: its class folders have no {', '.join(PICTURE_SUFFIXES)} files.")
    if empty:
        raise DatasetError(f"class folder {empty[0]} holds no pictures ({', '.join(PICTURE_SUFFIXES)})"
                           f"{f', nor do {len(empty) - 1} more' if len(empty) > 1 else ''}; add pictures to it or "
                           "remove it.")
    if len(names) < 2:
        raise DatasetError(f"{root} has one class folder ({names[0]}); a classifier needs at least two classes.")
    return found


def _hold_out(root: Path, classes: tuple[str, ...], readable: list[tuple[str, int]]) -> FolderSplit:
    """The train/test split: the folder's own train/ and test/, or a seeded fifth of each class held out."""
    if _split_layout(root):
        train = [(file, label) for file, label in readable if file.startswith("train/")]
        test = [(file, label) for file, label in readable if file.startswith("test/")]
        method = "the folder's train/ and test/ sub-folders"
    else:
        train, test = [], []
        for label, name in enumerate(classes):
            mine = [item for item in readable if item[1] == label]
            if len(mine) < 2:
                raise DatasetError(f"class {name} has {len(mine)} readable picture; holding out a test part of every "
                                   f"class needs at least 2 (add pictures to {root / name}, or give {root} train/ "
                                   "and test/ sub-folders).")
            order = np.random.default_rng([SPLIT_SEED, label]).permutation(len(mine))
            held = max(1, round(TEST_FRACTION * len(mine)))
            test += [mine[i] for i in order[:held]]
            train += [mine[i] for i in order[held:]]
        method = f"a seeded {TEST_FRACTION:.0%} of each class held out for testing, seed {SPLIT_SEED}"
    train, test = _shuffled(train, 1), _shuffled(test, 2)
    return FolderSplit(classes, [f for f, _ in train], [int(label) for _, label in train],
                       [f for f, _ in test], [int(label) for _, label in test], method)


def _shuffled(items: list[tuple[str, int]], stream: int) -> list[tuple[str, int]]:
    return [items[i] for i in np.random.default_rng([SPLIT_SEED, 1000 + stream]).permutation(len(items))]


@dataclass
class CheckedPictures:
    """The result of decoding every picture once: which are readable, their pixels (held in memory) or their
    pixel sums and sums of squares (streamed), and why the others were skipped."""

    readable: np.ndarray
    pixels: np.ndarray | None
    sums: np.ndarray
    squares: np.ndarray
    skipped: tuple[dict[str, str], ...]


class PictureChunks(Dataset):
    """Item k: the k-th chunk of pictures decoded (zeros where unreadable), with each one's error or None."""

    def __init__(self, root: Path, files: list[str], image_shape: tuple[int, ...], keep_pixels: bool) -> None:
        self.root, self.files, self.image_shape, self.keep_pixels = root, files, image_shape, keep_pixels

    def __len__(self) -> int:
        return -(-len(self.files) // CHECK_CHUNK)

    def __getitem__(self, chunk: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, list[str | None]]:
        files = self.files[chunk * CHECK_CHUNK:(chunk + 1) * CHECK_CHUNK]
        pixels = np.zeros((len(files), *self.image_shape), dtype=np.uint8)
        errors: list[str | None] = []
        for position, file in enumerate(files):
            try:
                data = (self.root / file).read_bytes()
                pixels[position] = prepare(data, self.image_shape, whole=True, max_pixels=FOLDER_MAX_PIXELS)
                errors.append(None)
            except (ImageError, OSError) as error:
                errors.append(unreadable_because(error))
        flat = pixels.reshape(len(files), -1).astype(np.int64)
        return (pixels if self.keep_pixels else None), flat.sum(axis=1), (flat * flat).sum(axis=1), errors


def _check_pictures(root: Path, files: list[str], options: FolderOptions, keep_pixels: bool) -> CheckedPictures:
    """Decode every picture once, before any training: an unreadable one is skipped (counted, with a warning) or,
    with --bad-images fail, refused."""
    chunks = PictureChunks(root, files, options.image_shape, keep_pixels)
    workers = STREAM_WORKERS if len(files) >= CHECK_WORKERS_FROM else 0
    # batch_size=None: each item is a whole chunk; default_convert turns its arrays into tensors.
    results = list(DataLoader(chunks, batch_size=None, num_workers=workers, generator=torch.Generator()))
    errors = [error for _, _, _, chunk_errors in results for error in chunk_errors]
    readable = np.array([error is None for error in errors], dtype=bool)
    skipped = tuple({"file": file, "reason": error} for file, error in zip(files, errors, strict=True) if error)
    if skipped:
        _report_unreadable(root, skipped, len(files), options.bad_images)
    pixels = np.concatenate([np.asarray(chunk[0]) for chunk in results]) if keep_pixels and results else None
    return CheckedPictures(readable, pixels, np.concatenate([np.asarray(chunk[1]) for chunk in results]),
                           np.concatenate([np.asarray(chunk[2]) for chunk in results]), skipped)


def _report_unreadable(root: Path, skipped: tuple[dict[str, str], ...], total: int, policy: str) -> None:
    shown = "; ".join(f"{problem['file']}: {problem['reason']}" for problem in skipped[:SHOWN_PROBLEMS])
    more = f"; and {len(skipped) - SHOWN_PROBLEMS} more" if len(skipped) > SHOWN_PROBLEMS else ""
    if policy == "fail":
        raise DatasetError(f"{len(skipped)} of the {total} pictures in {root} cannot be read: {shown}{more}. Fix or "
                           "remove them, or pass --bad-images skip to train without them.")
    print(f"warning: skipped {len(skipped)} of the {total} pictures in {root} that cannot be read (their names are "
          f"in the run's {SPLIT_FILE}): {shown}{more}. --bad-images fail refuses such a folder instead.",
          file=sys.stderr)


def _estimated_bytes(count: int, image_shape: tuple[int, ...]) -> int:
    return count * int(np.prod(image_shape))


def _stream_above() -> float:
    """Decoded size in bytes above which a folder is streamed; $SEQVISION_STREAM_ABOVE_MIB overrides 2 GiB."""
    value = os.environ.get(STREAM_ENV, str(STREAM_ABOVE_MIB))
    try:
        mib = float(value)
    except ValueError:
        raise ConfigError(f"${STREAM_ENV} must be a number of MiB (0 streams every folder), got {value!r}.") from None
    return mib * 2**20


def _announce(root: Path, split: FolderSplit, options: FolderOptions, stream: bool) -> None:
    count = len(split.train_files) + len(split.test_files)
    size = _estimated_bytes(count, options.image_shape) / 2**20
    how = (f"streamed from the files by {STREAM_WORKERS} DataLoader workers (over {_stream_above() / 2**20:g} MiB; "
           f"${STREAM_ENV} sets the limit)" if stream else "held in memory")
    shape = "x".join(map(str, options.image_shape))
    method = f"the split of {options.split_file}: {split.method}" if options.split_file else split.method
    print(f"folder {root}: {count} pictures in {len(split.classes)} classes, {len(split.train_files)} train and "
          f"{len(split.test_files)} test ({method}); {shape} images, {size:.1f} MiB decoded, {how}",
          file=sys.stderr)
