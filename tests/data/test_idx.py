import gzip

import numpy as np
import pytest

from seqvision.data.idx import read_idx, write_idx
from seqvision.errors import DatasetError


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.arange(-5, 5, dtype=np.int8),
        np.arange(12, dtype=np.int16).reshape(3, 4) * 1000,
        np.arange(6, dtype=np.int32).reshape(1, 2, 3) * 100_000,
        np.linspace(-1, 1, 10, dtype=np.float32),
        np.linspace(-1, 1, 6, dtype=np.float64).reshape(2, 3),
    ],
)
def test_round_trip(tmp_path, array, suffix):
    path = tmp_path / f"data{suffix}"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)


def test_header_is_big_endian_mnist_layout(tmp_path):
    write_idx(tmp_path / "images", np.zeros((2, 28, 28), dtype=np.uint8))
    raw = (tmp_path / "images").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")
    assert len(raw) == 16 + 2 * 28 * 28


def write_raw(path, content: bytes):
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def valid_bytes() -> bytes:
    return bytes.fromhex("00000803 00000003 00000002 00000002") + bytes(12)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_truncated_file_is_refused_and_named(tmp_path, suffix):
    path = write_raw(tmp_path / f"short{suffix}", valid_bytes()[:-3])
    with pytest.raises(DatasetError, match=rf"{path.name} is truncated.*\(3, 2, 2\).*28 bytes.*25 bytes"):
        read_idx(path)


def test_trailing_bytes_are_refused(tmp_path):
    path = write_raw(tmp_path / "long", valid_bytes() + b"\x00")
    with pytest.raises(DatasetError, match="longer than its header says"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = write_raw(tmp_path / "header", valid_bytes()[:9])
    with pytest.raises(DatasetError, match="truncated inside its header"):
        read_idx(path)


@pytest.mark.parametrize("start", ["01000803", "00000703", "89504e47"])
def test_wrong_magic_is_refused(tmp_path, start):
    path = write_raw(tmp_path / "magic", bytes.fromhex(start) + valid_bytes()[4:])
    with pytest.raises(DatasetError, match=r"magic.*not an IDX|not an IDX file"):
        read_idx(path)


def test_gz_that_is_not_gzip(tmp_path):
    path = tmp_path / "fake.gz"
    path.write_bytes(valid_bytes())
    with pytest.raises(DatasetError, match=r"fake.gz is not a valid gzip file"):
        read_idx(path)


def test_cut_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(valid_bytes() * 100)[:-20])
    with pytest.raises(DatasetError, match=r"cut.gz is not a valid gzip file"):
        read_idx(path)
