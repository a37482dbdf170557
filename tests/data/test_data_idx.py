"""IDX files: round trips, every kind of corruption, and the real MNIST files."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cnnlang.data import DataError, read_idx, write_idx
from cnnlang.data.datasets import read_idx_split
from cnnlang.errors import UsageError


@pytest.mark.parametrize("name", ["digits-idx3-ubyte", "digits-idx3-ubyte.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, name, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    if dtype == np.uint8:
        array = np.arange(30, dtype=np.uint8).reshape(2, 3, 5) * 7
    write_idx(tmp_path / name, array)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_hand_made_file_is_big_endian(tmp_path):
    # magic 00 00 0C 01 (int32, 1 dim), dim 2, values 1 and 258, all big-endian.
    (tmp_path / "raw").write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 1, 2]))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw"), [1, 258])


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    write_idx(tmp_path / "labels", np.array([3, 1, 4], dtype=np.uint8), compress=True)
    assert (tmp_path / "labels").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), [3, 1, 4])


def _images(tmp_path, name="images-idx3-ubyte"):
    """An uncompressed 4x2x3 IDX file (whatever its name) and its bytes."""
    write_idx(tmp_path / name, np.zeros((4, 2, 3), dtype=np.uint8), compress=False)
    return tmp_path / name, (tmp_path / name).read_bytes()


@pytest.mark.parametrize("mutate, expected", [
    (lambda b: b"\x01" + b[1:], "two zero bytes"),
    (lambda b: b[:2] + b"\x07" + b[3:], "unknown IDX dtype code 0x07"),
    (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
    (lambda b: b[:10], "truncated: expected a 16-byte header"),
    (lambda b: b[:-5], "truncated: expected 40 bytes (a 16-byte header and 4x2x3 uint8 values), found 35"),
    (lambda b: b + b"xyz", "3 unexpected bytes after the data: expected 40 bytes"),
    (lambda b: b[:2], "expected a 4-byte magic number, found 2 bytes"),
])
def test_corrupt_files_name_the_file(tmp_path, mutate, expected):
    path, data = _images(tmp_path)
    path.write_bytes(mutate(data))
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert isinstance(info.value, UsageError)
    assert str(info.value).startswith("images-idx3-ubyte: ")
    assert expected in str(info.value)


def test_truncated_payload_inside_gzip(tmp_path):
    path, data = _images(tmp_path, "images-idx3-ubyte.gz")
    path.write_bytes(gzip.compress(data[:-1]))
    with pytest.raises(DataError, match=r"^images-idx3-ubyte\.gz: truncated: expected 40 bytes .* found 39 "
                                        r"\(after decompression\)$"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"^train-images-idx3-ubyte\.gz: truncated gzip stream"):
        read_idx(path)


def test_corrupt_gzip_stream(tmp_path):
    path = tmp_path / "labels.gz"
    data = bytearray(gzip.compress(bytes(range(256)) * 20))
    data[20:30] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"^labels\.gz: "):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing-here.*cannot read"):
        read_idx(tmp_path / "nothing-here")


def test_real_mnist(mnist_root):
    train_images, train_labels = read_idx_split(mnist_root / "mnist", "train")
    test_images, test_labels = read_idx_split(mnist_root / "mnist", "test")
    assert train_images.shape == (60_000, 1, 28, 28) and train_images.dtype == np.uint8
    assert test_images.shape == (10_000, 1, 28, 28)
    assert train_labels.dtype == np.int64 and test_labels.shape == (10_000,)
    assert list(train_labels[:5]) == [5, 0, 4, 1, 9]
    assert train_labels.min() == 0 and train_labels.max() == 9
    # The published label counts (README of the data folder).
    assert list(np.bincount(train_labels)) == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert list(np.bincount(test_labels)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train_images.max() == 255 and train_images[0, 0, 0, 0] == 0
