"""IDX files (the MNIST format), raw or gzip-compressed.

An IDX file is two zero bytes, a dtype code, the number of dimensions, one big-endian int32 per
dimension, then the values in row-major order (big-endian for multi-byte types).
"""

from __future__ import annotations

import gzip
import io
import math
import zlib
from pathlib import Path

import numpy as np

from ..files import write_bytes_atomically
from .errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype codes, as defined on the MNIST page.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype: code for code, dtype in IDX_DTYPES.items()}


# The largest IDX content read (decompressed), far above MNIST's 47 MB and EMNIST's 550 MB: a
# gzip bomb posing as IDX is refused by its header's sizes before it is inflated.
MAX_IDX_BYTES = 1 << 30


def read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's content, decompressed when it is a gzip stream (detected by its magic bytes);
    the flag says whether it was compressed. Never more than the IDX header declares, nor more
    than MAX_IDX_BYTES."""
    try:
        if path.stat().st_size > MAX_IDX_BYTES:
            raise DataError(f"{path.name}: {path.stat().st_size:,} bytes, more than the {MAX_IDX_BYTES:,} an IDX file may have")
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read: {error.strerror or error}") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw, False
    try:
        return _inflate(raw, path.name), True
    except EOFError:
        raise DataError(f"{path.name}: truncated gzip stream: the compressed data ends early "
                        f"({len(raw):,} bytes); download the file again") from None
    except (OSError, zlib.error) as error:
        raise DataError(f"{path.name}: corrupt gzip stream ({error}); download the file again") from None


def _inflate(raw: bytes, name: str) -> bytes:
    """Decompress no further than the sizes in the IDX header (read first) say the data ends."""
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
        data = stream.read(4)
        if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
            return data  # not IDX: parse_idx says what is wrong with these bytes
        data += stream.read(4 * data[3])
        if len(data) < 4 + 4 * data[3]:
            return data
        dims = np.frombuffer(data, dtype=">u4", count=data[3], offset=4)
        expected = len(data) + math.prod(int(d) for d in dims) * IDX_DTYPES[data[2]].itemsize
        if expected > MAX_IDX_BYTES:
            raise DataError(f"{name}: the IDX header declares {_shape_text(tuple(int(d) for d in dims))} values "
                            f"({expected:,} bytes), more than the {MAX_IDX_BYTES:,} an IDX file may hold")
        data += stream.read(expected - len(data))
        if len(data) == expected and stream.read(1):
            raise DataError(f"{name}: the gzip stream holds more than the {expected:,} bytes its IDX header "
                            "declares; the file is damaged or not what its name says")
        return data


def _shape_text(dims: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims) if dims else "scalar"


def parse_idx(data: bytes, name: str, compressed: bool = False) -> np.ndarray:
    """Decode IDX bytes; ``name`` is the file name used in error messages."""
    where = " (after decompression)" if compressed else ""
    if len(data) < 4:
        raise DataError(f"{name}: not an IDX file: expected a 4-byte magic number, found {len(data)} bytes{where}")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file: expected the magic number to start with two zero bytes, "
                        f"found {data[:4].hex(' ')}{where}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions (expected at least 1)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated: expected a {header}-byte header for {ndim} dimensions, "
                        f"found {len(data):,} bytes{where}")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    count = int(np.prod(dims, dtype=np.int64))
    expected = header + count * dtype.itemsize
    what = f"a {header}-byte header and {_shape_text(dims)} {dtype.name} values"
    if len(data) < expected:
        raise DataError(f"{name}: truncated: expected {expected:,} bytes ({what}), found {len(data):,}{where}")
    if len(data) > expected:
        raise DataError(f"{name}: {len(data) - expected:,} unexpected bytes after the data: expected "
                        f"{expected:,} bytes ({what}), found {len(data):,}{where}")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(dims)
    # A native-order, writable copy: callers may augment in place, and the bytes are read-only.
    return values.astype(dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype, copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed, as a native-order array of its declared shape."""
    path = Path(path)
    data, compressed = read_bytes(path)
    return parse_idx(data, path.name, compressed)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` is true (by default, when
    the name ends in ``.gz``)."""
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.itemsize > 1 else array.dtype
    if native not in _CODES or array.ndim == 0 or array.ndim > 255:
        raise DataError(f"{path.name}: cannot write a {array.dtype} array with {array.ndim} dimensions as IDX")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    write_bytes_atomically(path, data)
