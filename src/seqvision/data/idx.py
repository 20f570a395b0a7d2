"""The IDX format MNIST ships in: a magic number, big-endian dimensions, then the raw array.

Every check that can fail names the file, because a short or mangled file otherwise turns into a
silently smaller dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from seqvision.errors import DatasetError

# The third magic byte says the element type; IDX stores multi-byte values big-endian.
IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IDX_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The uncompressed content of a raw or gzipped (.gz) file."""
    path = Path(path)
    try:
        if path.suffix != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as handle:
            return handle.read()
    except (gzip.BadGzipFile, zlib.error, EOFError) as error:
        raise DatasetError(f"{path} is not a valid gzip file ({error}); delete it and download it again.") from None
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from None


def md5_of(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def parse_idx(content: bytes, name: str | os.PathLike[str]) -> np.ndarray:
    """Decode IDX bytes into an array in native byte order; `name` is only used in error messages."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in IDX_DTYPES:
        raise DatasetError(f"{name} is not an IDX file: its first bytes {content[:4].hex(' ')!r} are not an IDX "
                           "magic number (00 00 <type> <dims>); check the file is the dataset file it is named as.")
    dtype, ndim = IDX_DTYPES[content[2]], content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DatasetError(f"{name} is truncated inside its header ({len(content)} bytes); download it again.")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "longer than its header says"
        raise DatasetError(f"{name} is {problem}: its header declares shape {shape} ({expected} bytes) but it holds "
                           f"{len(content)} bytes; download it again.")
    return np.frombuffer(content, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    return parse_idx(read_bytes(path), path)


def encode_idx(array: np.ndarray) -> bytes:
    dtype = array.dtype.newbyteorder("=")
    if dtype not in IDX_CODES:
        raise ValueError(f"IDX cannot store {array.dtype}; use one of {sorted(str(d) for d in IDX_CODES)}")
    code = IDX_CODES[dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzipped when the name ends in .gz (to convert your own data)."""
    from seqvision.atomic import atomic_path

    content = encode_idx(array)
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".gz":
            tmp.write_bytes(gzip.compress(content, mtime=0))
        else:
            tmp.write_bytes(content)
