"""Datasets by name, read into memory as uint8 arrays. Importing this package registers them all."""

from seqvision.data import datasets  # noqa: F401  (registers mnist, fashion-mnist, digits)
from seqvision.data.idx import read_idx, write_idx
from seqvision.data.registry import DatasetSpec, dataset_names, get_dataset, load_dataset, register_dataset
from seqvision.data.splits import ImageSplits, stratified_split

__all__ = ["DatasetSpec", "ImageSplits", "dataset_names", "get_dataset", "load_dataset", "read_idx",
           "register_dataset", "stratified_split", "write_idx"]
