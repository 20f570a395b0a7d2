import numpy as np
import pytest

from seqvision.data.idx import encode_idx, md5_of, write_idx
from seqvision.data.sources import RemoteFile

FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def tiny_arrays(seed: int = 0) -> list[np.ndarray]:
    """A miniature MNIST: 20 training and 10 test images of 28x28 with labels 0..9."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), np.arange(20, dtype=np.uint8) % 10,
            rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10, dtype=np.uint8)]


@pytest.fixture
def tiny_dataset(tmp_path):
    """A folder of gzipped tiny IDX files, and the RemoteFile table (with their real md5s) that describes them."""
    folder = tmp_path / "served"
    folder.mkdir()
    remotes = []
    for name, array in zip(FILE_NAMES, tiny_arrays(), strict=True):
        write_idx(folder / f"{name}.gz", array)
        remotes.append(RemoteFile(name, md5_of(encode_idx(array))))
    return folder, remotes


@pytest.fixture(autouse=True)
def isolated_search_paths(tmp_path, monkeypatch):
    """Keep tests away from the real cache, system folders and any SEQVISION_DATA the shell has."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SEQVISION_DATA", raising=False)
    monkeypatch.setattr("seqvision.data.sources.SYSTEM_DATASET_DIRS", (tmp_path / "system",))
