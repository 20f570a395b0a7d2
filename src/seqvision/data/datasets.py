"""The registered datasets: MNIST and Fashion-MNIST from IDX files, scikit-learn's bundled 8x8 digits, and the
releases of KMNIST, EMNIST (digits, letters) and CIFAR-10 (seqvision.data.releases reads their formats)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqvision.data.idx import parse_idx
from seqvision.data.registry import register_dataset
from seqvision.data.releases import CifarRelease, EmnistSplit, GzIdxRelease, idx_pair
from seqvision.data.sources import PublishedFile, RemoteFile, locate_files, read_verified
from seqvision.data.splits import ImageSplits, stratified_split


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
        train = idx_pair(arrays[0], arrays[1], paths[0:2], self.num_classes)
        test = idx_pair(arrays[2], arrays[3], paths[2:4], self.num_classes)
        return ImageSplits(self.name, *train, *test, self.num_classes, str(paths[0].parent))


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


@register_dataset("mnist", image_shape=(28, 28), num_classes=10, default_shift=2,
                  description="handwritten digits, 60k train + 10k test")
def load_mnist(data_dir: Path | None) -> ImageSplits:
    return MNIST.load(data_dir)


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")


@register_dataset("fashion-mnist", image_shape=(28, 28), num_classes=10, box_fraction=1.0, classes=FASHION_CLASSES,
                  mirror_invariant=True, description="Zalando clothing images, a drop-in replacement for MNIST")
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


# Kuzushiji-MNIST (github.com/rois-codh/kmnist): the md5s of the four published .gz files.
KMNIST = GzIdxRelease(
    "kmnist",
    (PublishedFile("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
     PublishedFile("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
     PublishedFile("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
     PublishedFile("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134")),
    mirrors=("https://codh.rois.ac.jp/kmnist/dataset/kmnist/", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
    counts=(60000, 10000),
)
# One hiragana from each row of the syllabary, romanised, in label order (kmnist_classmap.csv: U+304A お for 0 ...).
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")


@register_dataset("kmnist", image_shape=(28, 28), num_classes=10, box_fraction=1.0, classes=KMNIST_CLASSES,
                  default_shift=2,
                  description="Kuzushiji-MNIST: cursive Japanese hiragana, 60k train + 10k test")
def load_kmnist(data_dir: Path | None) -> ImageSplits:
    return KMNIST.load(data_dir)


# EMNIST (NIST Special Database 19 as MNIST-style 28x28 images): one published gzip.zip holding every split as
# gzipped IDX files; the md5 of the zip is NIST's, those of the files inside it are the ones other toolkits check.
EMNIST_ARCHIVE = PublishedFile("gzip.zip", "58c8d27c78d21e728a6bc7b3cc06412e")
EMNIST_MIRRORS = ("https://biometrics.nist.gov/cs_links/EMNIST/",)
# EMNIST centres each character in a 2-pixel border, filling 24 of the 28 pixels of the side.
EMNIST_BOX_FRACTION = 24 / 28


def emnist_members(split: str, md5s: tuple[str, str, str, str]) -> tuple[PublishedFile, ...]:
    names = ("train-images-idx3", "train-labels-idx1", "test-images-idx3", "test-labels-idx1")
    return tuple(PublishedFile(f"emnist-{split}-{name}-ubyte.gz", md5) for name, md5 in zip(names, md5s, strict=True))


EMNIST_DIGITS = EmnistSplit(
    "emnist-digits", EMNIST_ARCHIVE,
    emnist_members("digits", ("d2662ecdc47895a6bbfce25de9e9a677", "2223fcfee618ac9c89ef20b6e48bcf9e",
                              "a159b8b3bd6ab4ed4793c1cb71a2f5cc", "8afde66ea51d865689083ba6bb779fac")),
    EMNIST_MIRRORS, counts=(240000, 40000), num_classes=10,
)
EMNIST_LETTERS = EmnistSplit(
    "emnist-letters", EMNIST_ARCHIVE,
    emnist_members("letters", ("8795078f199c478165fe18db82625747", "c16de4f1848ddcdddd39ab65d2a7be52",
                               "382093a19703f68edac6d01b8dfdfcad", "d4108920cd86601ec7689a97f2de7f59")),
    EMNIST_MIRRORS, counts=(124800, 20800), num_classes=26, first_label=1,
)
# Upper and lower case of each letter are one class.
LETTER_CLASSES = tuple(f"{chr(ord('A') + index)}/{chr(ord('a') + index)}" for index in range(26))


@register_dataset("emnist-digits", image_shape=(28, 28), num_classes=10, box_fraction=EMNIST_BOX_FRACTION,
                  default_shift=2,
                  description="EMNIST handwritten digits, 240k train + 40k test")
def load_emnist_digits(data_dir: Path | None) -> ImageSplits:
    return EMNIST_DIGITS.load(data_dir)


@register_dataset("emnist-letters", image_shape=(28, 28), num_classes=26, box_fraction=EMNIST_BOX_FRACTION,
                  classes=LETTER_CLASSES, default_shift=2,
                  description="EMNIST handwritten letters (A and a one class), 124.8k train + 20.8k test")
def load_emnist_letters(data_dir: Path | None) -> ImageSplits:
    return EMNIST_LETTERS.load(data_dir)


# CIFAR-10 (www.cs.toronto.edu/~kriz/cifar.html): the md5 of the published archive, and of each batch in it.
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR10 = CifarRelease(
    "cifar10",
    PublishedFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    tuple(PublishedFile(f"{CIFAR_FOLDER}/data_batch_{number}", md5) for number, md5 in enumerate(
        ("c99cafc152244af753f735de768cd75f", "d4bba439e000b95fd0a9bffe97cbabec", "54ebc095f3ab1f0389bbae665268c751",
         "634d18415352ddfa80567beed471001a", "482c414d41f54cd18b22e5b47cb7c3cb"), start=1)),
    PublishedFile(f"{CIFAR_FOLDER}/test_batch", "40351d587109b95175f43aff81a1287e"),
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    counts=(50000, 10000),
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@register_dataset("cifar10", image_shape=(32, 32, 3), num_classes=10, box_fraction=1.0, classes=CIFAR10_CLASSES,
                  mirror_invariant=True, description="colour photos of 10 kinds of object, 50k train + 10k test")
def load_cifar10(data_dir: Path | None) -> ImageSplits:
    return CIFAR10.load(data_dir)
