import numpy as np
import pytest

from seqvision.data import dataset_names, get_dataset, load_dataset, stratified_split
from seqvision.errors import DatasetError


def test_registry():
    names = ["cifar10", "digits", "emnist-digits", "emnist-letters", "fashion-mnist", "kmnist", "mnist"]
    assert dataset_names() == names
    assert get_dataset("mnist").image_shape == (28, 28)
    with pytest.raises(DatasetError, match=f"unknown dataset 'cifar'; available datasets: {', '.join(names)}"):
        get_dataset("cifar")


def test_digits_is_bundled_and_split_the_same_way_every_time():
    first, second = load_dataset("digits"), load_dataset("digits")
    assert first.image_shape == (8, 8) and first.num_classes == 10
    assert first.train_images.dtype == np.uint8 and first.train_images.max() == 255
    assert len(first.train_labels) + len(first.test_labels) == 1797
    assert len(first.test_labels) == 360
    np.testing.assert_array_equal(first.test_images, second.test_images)
    assert np.bincount(first.test_labels).min() >= 35


def test_stratified_split_properties():
    labels = np.repeat(np.arange(10), [50, 60, 70, 80, 90, 100, 110, 120, 130, 140])
    kept, held = stratified_split(labels, 0.1, seed=5)
    assert set(kept).isdisjoint(held) and len(kept) + len(held) == len(labels)
    assert np.all(np.diff(held) > 0)
    for label, count in enumerate(np.bincount(labels)):
        assert abs(np.sum(labels[held] == label) - 0.1 * count) <= 1
    np.testing.assert_array_equal(held, stratified_split(labels, 0.1, seed=5)[1])
    assert not np.array_equal(held, stratified_split(labels, 0.1, seed=6)[1])


@pytest.mark.mnist
def test_real_mnist_files(mnist_root):
    mnist = load_dataset("mnist", mnist_root)
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.test_labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(mnist.train_labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert abs(mnist.train_images.mean() / 255 - 0.1307) < 1e-3
    assert abs(mnist.train_images.std() / 255 - 0.3081) < 1e-3
