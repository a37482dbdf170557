"""CIFAR-10 binaries on small synthetic files: a folder, its parent and a tarball."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest

from cnnlang.data import DataError, read_cifar10
from cnnlang.data.cifar import CLASSES, RECORD_SIZE, TEST_FILES, TRAIN_FILES


def _records(labels, seed):
    """Bytes of CIFAR records with these labels, and the images they hold (N x 3 x 32 x 32)."""
    images = np.random.default_rng(seed).integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    data = b"".join(bytes([label]) + image.tobytes() for label, image in zip(labels, images))
    return data, images


@pytest.fixture
def cifar_files():
    """Each batch file's bytes (3 records each) and the expected images and labels per split."""
    files, train_images, train_labels = {}, [], []
    for i, name in enumerate(TRAIN_FILES):
        labels = [i, (i + 3) % 10, 9]
        files[name], images = _records(labels, i)
        train_images.append(images)
        train_labels += labels
    files[TEST_FILES[0]], test_images = _records([7, 0, 2], 99)
    files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()
    expected = {"train": (np.concatenate(train_images), train_labels), "test": (test_images, [7, 0, 2])}
    return files, expected


def _write_folder(folder, files):
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _check(source, expected):
    for split, (images, labels) in expected.items():
        got_images, got_labels, classes = read_cifar10(source, split)
        assert got_images.shape == (len(labels), 3, 32, 32) and got_images.dtype == np.uint8
        np.testing.assert_array_equal(got_images, images)
        assert got_labels.dtype == np.int64 and list(got_labels) == labels
        assert classes == CLASSES


def test_record_layout_is_label_then_planes(tmp_path):
    record = bytes([6]) + bytes(range(256)) * 12  # 3072 pixel bytes
    (tmp_path / "test_batch.bin").write_bytes(record)
    images, labels, _ = read_cifar10(tmp_path, "test")
    assert list(labels) == [6]
    # Red plane first, row-major: pixel (row 1, col 0) of red is byte 32; green starts at 1024.
    assert images[0, 0, 1, 0] == 32 and images[0, 1, 0, 0] == 1024 % 256 and images[0, 2, 0, 5] == 5


def test_folder_and_its_parent(tmp_path, cifar_files):
    files, expected = cifar_files
    _write_folder(tmp_path / "cifar-10-batches-bin", files)
    _check(tmp_path / "cifar-10-batches-bin", expected)
    _check(tmp_path, expected)


def test_tarball_is_read_without_extracting(tmp_path, cifar_files):
    files, expected = cifar_files
    archive = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../escaped.txt")
        evil.size = 3
        tar.addfile(evil, io.BytesIO(b"bad"))
    _check(archive, expected)
    _check(tmp_path, expected)  # the folder holding the tarball
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-binary.tar.gz"]
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_classes_default_without_meta(tmp_path, cifar_files):
    files, _ = cifar_files
    del files["batches.meta.txt"]
    _write_folder(tmp_path / "b", files)
    assert read_cifar10(tmp_path / "b", "test")[2] == CLASSES


def test_truncated_batch_names_file_and_record_size(tmp_path, cifar_files):
    files, _ = cifar_files
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-100]
    _write_folder(tmp_path / "b", files)
    with pytest.raises(DataError, match=rf"^data_batch_3\.bin: truncated .*{RECORD_SIZE:,}-byte records.*"
                                        r"found 9,119 bytes \(2 records and 2,973 bytes over\)"):
        read_cifar10(tmp_path / "b", "train")


def test_missing_batch_file(tmp_path, cifar_files):
    files, _ = cifar_files
    del files["data_batch_5.bin"]
    _write_folder(tmp_path / "b", files)
    with pytest.raises(DataError, match="missing CIFAR-10 file.*data_batch_5.bin"):
        read_cifar10(tmp_path / "b", "train")


def test_bad_label(tmp_path):
    data, _ = _records([1, 12], 0)
    (tmp_path / "test_batch.bin").write_bytes(data)
    with pytest.raises(DataError, match=r"test_batch\.bin: record 1 has label 12 \(expected 0-9\)"):
        read_cifar10(tmp_path, "test")


def test_corrupt_tarball(tmp_path):
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match=r"^cifar-10-binary\.tar\.gz: cannot read the tar archive"):
        read_cifar10(tmp_path, "test")


def test_nothing_there(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 binaries found"):
        read_cifar10(tmp_path, "train")
