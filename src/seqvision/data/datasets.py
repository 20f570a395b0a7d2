"""The registered datasets: MNIST and Fashion-MNIST from IDX files, and scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvision.data.idx import parse_idx
from seqvision.data.registry import register_dataset
from seqvision.data.sources import RemoteFile, locate_files, read_verified
from seqvision.data.splits import ImageSplits, stratified_split
from seqvision.errors import DatasetError


@dataclass(frozen=True)
class IdxDataset:
    """A dataset shipped as the four MNIST-style IDX files, with published md5s and download mirrors."""

    name: str
    train_images: RemoteFile
    train_labels: RemoteFile
    test_images: RemoteFile
    test_labels: RemoteFile
    mirrors: tuple[str, ...]
    num_classes: int = 10

    def load(self, data_dir: Path | None) -> ImageSplits:
        files = (self.train_images, self.train_labels, self.test_images, self.test_labels)
        paths = locate_files(self.name, files, self.mirrors, data_dir)
        arrays = [parse_idx(read_verified(path, remote), path) for path, remote in zip(paths, files, strict=True)]
        for images, labels, images_path, labels_path in ((arrays[0], arrays[1], paths[0], paths[1]),
                                                         (arrays[2], arrays[3], paths[2], paths[3])):
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DatasetError(f"{images_path} {images.shape} and {labels_path} {labels.shape} do not pair up "
                                   "as (N, H, W) images with N labels.")
            if labels.max(initial=0) >= self.num_classes:
                raise DatasetError(f"{labels_path} has label {labels.max()}, outside 0..{self.num_classes - 1}.")
        return ImageSplits(self.name, arrays[0].astype(np.uint8), arrays[1].astype(np.int64),
                           arrays[2].astype(np.uint8), arrays[3].astype(np.int64), self.num_classes,
                           str(paths[0].parent))


MNIST = IdxDataset(
    "mnist",
    RemoteFile("train-images-idx3-ubyte", "6bbc9ace898e44ae57da46a324031adb"),
    RemoteFile("train-labels-idx1-ubyte", "a25bea736e30d166cdddb491f175f624"),
    RemoteFile("t10k-images-idx3-ubyte", "2646ac647ad5339dbf082846283269ea"),
    RemoteFile("t10k-labels-idx1-ubyte", "27ae3e4e09519cfbb04c329615203637"),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
)

FASHION_MNIST = IdxDataset(
    "fashion-mnist",
    RemoteFile("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    RemoteFile("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    RemoteFile("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    RemoteFile("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
             "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"),
)


@register_dataset("mnist", image_shape=(28, 28), num_classes=10, description="handwritten digits, 60k train + 10k test")
def load_mnist(data_dir: Path | None) -> ImageSplits:
    return MNIST.load(data_dir)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@register_dataset("fashion-mnist", image_shape=(28, 28), num_classes=10, box_fraction=1.0, classes=FASHION_CLASSES,
                  description="Zalando clothing images, a drop-in replacement for MNIST")
def load_fashion_mnist(data_dir: Path | None) -> ImageSplits:
    return FASHION_MNIST.load(data_dir)


DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed, so every run of any seed is tested on the same images


@register_dataset("digits", image_shape=(8, 8), num_classes=10, box_fraction=1.0,
                  description="scikit-learn's bundled 8x8 digits (1,797 images; no download)")
def load_digits(data_dir: Path | None) -> ImageSplits:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # The bundled pixels are counts 0..16; scale them to the 0..255 range of every other dataset.
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    return ImageSplits("digits", images[train], labels[train], images[test], labels[test], 10,
                       "scikit-learn bundled digits")
