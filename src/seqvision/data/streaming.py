"""Batches of a folder dataset too large to hold in memory, decoded from its files by DataLoader workers.

`FileImages` stands in for the uint8 image array of a split: it holds file names, and answers what
`seqvision.data.batches.split_batches` asks of an array (length, shape, slices and index arrays, mean and std)
without decoding anything. `StreamingBatches` is `InMemoryBatches` over those files: the same seeded order per
(seed, epoch), the same shifts, shards and mid-epoch resume (it inherits them), with each planned batch decoded
ahead by worker processes instead of gathered from a tensor. Given the same images, both yield the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqvision.data.batches import InMemoryBatches
from seqvision.errors import DatasetError, ImageError

# Local files, not uploads: allow any camera's picture (Pillow's own bomb guard still stops at 89 megapixels).
FOLDER_MAX_PIXELS = 80_000_000
# Decoding workers: enough to keep a model on the CPU or a GPU fed with small pictures, without taking every core.
STREAM_WORKERS = max(1, min(4, os.cpu_count() or 1))


def decode_picture(path: Path, image_shape: tuple[int, ...]) -> np.ndarray:
    """One picture file as a uint8 image of image_shape, made exactly as `seqvision predict` makes a picture for a
    model of this dataset (seqvision.data.images.prepare: converted, then resized whole)."""
    from seqvision.data.images import prepare

    try:
        return prepare(path.read_bytes(), image_shape, whole=True, max_pixels=FOLDER_MAX_PIXELS)
    except (ImageError, OSError) as error:
        raise DatasetError(f"cannot read the picture {path}: {unreadable_because(error)}.") from None


def unreadable_because(error: Exception) -> str:
    """The cause in an image error, without the advice meant for uploads ("send the file again")."""
    return str(error).split("; ")[0].rstrip(".")


class FileImages:
    """The pictures of a folder split as a lazy, read-only stand-in for a uint8 array (N, *image_shape).

    `sums` and `squares` are each file's pixel sum and sum of squares, taken when the folder was checked, so the
    mean and std of any subset need no decoding. Indexing with an integer decodes that image; with a slice or an
    index array it gives the subset, still undecoded. `np.asarray` decodes them all.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, root: Path, files: np.ndarray | list[str], image_shape: tuple[int, ...], sums: np.ndarray,
                 squares: np.ndarray) -> None:
        self.root = Path(root)
        self.files = np.asarray(files, dtype=object)
        self.image_shape = tuple(image_shape)
        self.sums = np.asarray(sums, dtype=np.int64)
        self.squares = np.asarray(squares, dtype=np.int64)
        if not len(self.files) == len(self.sums) == len(self.squares):
            raise ValueError(f"{len(self.files)} files, {len(self.sums)} sums and {len(self.squares)} squares")

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.image_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (int, np.integer)):
            return decode_picture(self.root / self.files[index], self.image_shape)
        index = index.numpy() if isinstance(index, torch.Tensor) else index
        return FileImages(self.root, self.files[index], self.image_shape, self.sums[index], self.squares[index])

    def decode(self, index: Any = slice(None)) -> np.ndarray:
        """The images at `index` (an index array, a tensor or a slice), decoded in this process: (n, *image_shape)."""
        index = index.numpy() if isinstance(index, torch.Tensor) else index
        files = np.atleast_1d(self.files[index])
        pixels = np.empty((len(files), *self.image_shape), dtype=np.uint8)
        for position, name in enumerate(files):
            pixels[position] = decode_picture(self.root / name, self.image_shape)
        return pixels

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        pixels = self.decode()
        return pixels if dtype is None else pixels.astype(dtype)

    def mean(self, dtype: Any = np.float64) -> float:
        """The mean pixel value over every image, as ndarray.mean gives it."""
        return float(np.dtype(dtype).type(self.sums.sum() / self._pixel_count()))

    def std(self, dtype: Any = np.float64) -> float:
        """The standard deviation of the pixel values over every image, as ndarray.std gives it."""
        count = self._pixel_count()
        mean = self.sums.sum() / count
        return float(np.dtype(dtype).type(np.sqrt(max(self.squares.sum() / count - mean * mean, 0.0))))

    def _pixel_count(self) -> int:
        if not len(self.files):
            raise ValueError("the mean of no images is undefined")
        return len(self.files) * int(np.prod(self.image_shape))


class DecodedFiles:
    """What `InMemoryBatches.batch` indexes for streamed images: `files[index]` is a uint8 tensor (n, *image_shape)
    as from the in-memory tensor. During an epoch the batch the workers decoded ahead is served from `ahead`; any
    other index (the report's few test images) is decoded on the spot."""

    def __init__(self, images: FileImages) -> None:
        self.source = images
        self.ahead: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.source)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.source.shape

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.dim() == 0):
            return torch.from_numpy(self.source.decode(np.array([int(index)]))[0])
        index = torch.as_tensor(index)
        if self.ahead is not None and torch.equal(self.ahead[0], index):
            pixels, self.ahead = self.ahead[1], None
            return pixels
        return torch.from_numpy(self.source.decode(index))


class PlannedBatches(Dataset):
    """Item k is the k-th planned batch's pixels, decoded in a DataLoader worker."""

    def __init__(self, images: FileImages, plan: list[torch.Tensor]) -> None:
        self.images, self.plan = images, plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, number: int) -> torch.Tensor:
        return torch.from_numpy(self.images.decode(self.plan[number]))


class StreamingBatches(InMemoryBatches):
    """`InMemoryBatches` whose images stay on disk: each epoch's batches are planned exactly as in memory (seeded
    order, shards, shifts, the position of a resumed epoch) and decoded `prefetch` batches ahead by `workers`
    processes, in order."""

    def __init__(self, images: FileImages, labels: np.ndarray, batch_size: int, *args: Any,
                 workers: int = STREAM_WORKERS, **options: Any) -> None:
        super().__init__(images, labels, batch_size, *args, **options)
        self.workers = workers

    @staticmethod
    def hold(images: FileImages) -> DecodedFiles:  # type: ignore[override]
        return DecodedFiles(images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        first = self.batches_done  # planned_batches resumes from here
        plan = list(self.planned_batches())
        # A private generator: a DataLoader seeds its workers from the global one, which dropout draws from, and a
        # streamed run must train exactly as an in-memory one.
        loader = DataLoader(PlannedBatches(self.images.source, [index for index, _ in plan]), batch_size=None,
                            num_workers=self.workers, worker_init_fn=_one_thread, generator=torch.Generator())
        for number, ((index, shifts), pixels) in enumerate(zip(plan, loader, strict=True), start=first):
            self.images.ahead = (index, pixels)
            yield self.batch(index, shifts, self.warp_of(number))


def _one_thread(worker: int) -> None:
    # Decoding is Pillow's work; torch threads in every worker would only compete with training for the cores.
    torch.set_num_threads(1)
