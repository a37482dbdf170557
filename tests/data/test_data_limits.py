"""Decompression limits and one-line errors for hostile dataset files (issue 17): a gzip bomb
posing as IDX, a PNG declaring hundreds of millions of pixels, a CIFAR archive that is no tar."""

from __future__ import annotations

import gzip
import resource
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnlang.data import DataError, read_idx
from cnnlang.data import idx as idx_module
from cnnlang.data.cifar import read_cifar10
from cnnlang.data.folder import read_image_folder


def _gzip_stream(path, header: bytes, zeros: int) -> None:
    """A gzip file of ``header`` then ``zeros`` zero bytes, written without holding them."""
    with gzip.open(path, "wb", compresslevel=9) as stream:
        stream.write(header)
        chunk = bytes(1 << 20)
        for _ in range(zeros // len(chunk)):
            stream.write(chunk)


def test_a_gzip_bomb_whose_header_declares_too_much_is_refused_unread(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    # 60,000 images of 256 x 256: 3.9 GB declared, 64 MB actually compressed in.
    _gzip_stream(path, bytes([0, 0, 8, 3]) + struct.pack(">III", 60000, 256, 256), 64 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"declares 60000x256x256 values .* more than the 1,073,741,824"):
        read_idx(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # kB


def test_a_gzip_stream_longer_than_its_header_says_stops_at_the_header(tmp_path):
    path = tmp_path / "bomb-idx1-ubyte.gz"
    _gzip_stream(path, bytes([0, 0, 8, 1]) + struct.pack(">I", 10), 32 << 20)
    with pytest.raises(DataError, match="holds more than the 18 bytes its IDX header declares"):
        read_idx(path)


def test_the_limit_applies_to_uncompressed_files_too(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_module, "MAX_IDX_BYTES", 100)
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 200) + bytes(200))
    with pytest.raises(DataError, match="more than the 100 an IDX file may have"):
        read_idx(path)


def _png_header_only(path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR declaring width x height, and a tiny IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_a_png_declaring_400_million_pixels_is_one_clear_error(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "train" / name / "ok.png")
    _png_header_only(tmp_path / "train" / "dog" / "huge.png", 20000, 20000)
    with pytest.raises(DataError, match=r"400,?000,?000 pixels"):
        read_image_folder(tmp_path, "train")
    with pytest.raises(DataError, match=r"400,?000,?000 pixels"):
        read_image_folder(tmp_path, "train", channels=1, image_size=8)


def test_a_cifar_archive_that_is_no_tar_is_one_line(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"this is not an archive\n" * 10)
    with pytest.raises(DataError) as caught:
        read_cifar10(tmp_path, "train")
    assert "not a tar archive" in str(caught.value) and "\n" not in str(caught.value)


def test_legitimate_gzip_idx_still_reads(tmp_path):
    from cnnlang.data import write_idx

    write_idx(tmp_path / "x-idx3-ubyte.gz", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte.gz"), np.arange(24).reshape(2, 3, 4))


def test_a_png_just_over_the_pixel_limit_is_refused_before_decoding(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    _png_header_only(tmp_path / "train" / "a" / "big.png", 10000, 10000)  # 100 M: Pillow only warns
    with pytest.raises(DataError, match=r"10000 x 10000 = 100,000,000 pixels, more than the"):
        read_image_folder(tmp_path, "train", channels=1, image_size=8)
