"""load_dataset: known names found in the data folders, paths detected from their contents."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from cnnlang.data import DataError, Dataset, load_dataset, write_idx


def _mnist_like(folder, n_train=6, n_test=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 5, 7), dtype=np.uint8)
        labels = (np.arange(n) % 3).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)  # raw works too
        arrays[prefix] = images, labels
    return arrays


def test_real_mnist_by_name(mnist_root, monkeypatch):
    monkeypatch.setenv("CNNLANG_CACHE", "/nonexistent-cache")
    start = time.perf_counter()
    train = load_dataset("mnist", data_dir=mnist_root, download=False)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"loading MNIST took {elapsed:.2f} s"
    assert train.images.shape == (60_000, 1, 28, 28) and train.labels.shape == (60_000,)
    assert list(train.labels[:5]) == [5, 0, 4, 1, 9] and train.classes == [str(d) for d in range(10)]
    monkeypatch.setenv("CNNLANG_DATA", str(mnist_root))
    test = load_dataset("MNIST", "test", download=False)
    assert len(test) == 10_000 and test.name == "mnist (test)"


def test_fashion_mnist_class_names_from_env_folder(tmp_path, monkeypatch):
    arrays = _mnist_like(tmp_path / "fashion-mnist")
    monkeypatch.setenv("CNNLANG_DATA", str(tmp_path))
    monkeypatch.setenv("CNNLANG_CACHE", str(tmp_path / "no-cache"))
    train = load_dataset("fashion-mnist", download=False)
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    np.testing.assert_array_equal(train.images[:, 0], arrays["train"][0])
    np.testing.assert_array_equal(train.labels, arrays["train"][1])
    assert len(load_dataset("Fashion_MNIST", "test", download=False)) == 4


def test_data_dir_comes_before_env(tmp_path, monkeypatch):
    _mnist_like(tmp_path / "a" / "mnist", n_train=6)
    _mnist_like(tmp_path / "b" / "mnist", n_train=9)
    monkeypatch.setenv("CNNLANG_DATA", str(tmp_path / "b"))
    assert len(load_dataset("mnist", data_dir=tmp_path / "a", download=False)) == 6
    assert len(load_dataset("mnist", data_dir=tmp_path / "nothing", download=False)) == 9


def test_idx_folder_by_path(tmp_path):
    arrays = _mnist_like(tmp_path / "digits")
    test = load_dataset(str(tmp_path / "digits"), "test")
    assert test.images.shape == (4, 1, 5, 7) and test.classes == ["0", "1", "2"]
    np.testing.assert_array_equal(test.labels, arrays["t10k"][1])


def test_cifar_folder_by_path(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    record = bytes([4]) + bytes(3072)
    (folder / "test_batch.bin").write_bytes(record * 2)
    test = load_dataset(str(tmp_path), "test")
    assert test.images.shape == (2, 3, 32, 32) and list(test.labels) == [4, 4] and test.classes[4] == "deer"


def test_image_folder_by_path_with_size(tmp_path):
    for cls, size in (("x", (10, 12)), ("y", (8, 8))):
        (tmp_path / cls).mkdir()
        Image.fromarray(np.full(size, 50, dtype=np.uint8)).save(tmp_path / cls / "0.png")
    data = load_dataset(str(tmp_path), image_size=6, channels=3)
    assert data.images.shape == (2, 3, 6, 6) and data.classes == ["x", "y"] and list(data.labels) == [0, 1]
    assert np.all(data.images == 50)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match=r"unknown dataset 'imagenet'.*mnist, fashion-mnist, cifar10"):
        load_dataset("imagenet")


def test_folder_without_a_dataset(tmp_path):
    with pytest.raises(DataError, match="no dataset found: expected MNIST-style IDX files"):
        load_dataset(str(tmp_path))


def test_bad_split(tmp_path):
    with pytest.raises(DataError, match="unknown split 'valid'"):
        load_dataset("mnist", "valid")


def test_dataset_checks_its_arrays():
    with pytest.raises(DataError, match="labels run from 0 to 3, expected 0-2"):
        Dataset(np.zeros((2, 1, 2, 2), np.uint8), np.array([0, 3]), ["a", "b", "c"], "toy")
    with pytest.raises(DataError, match="expected N x C x H x W uint8 images"):
        Dataset(np.zeros((2, 2, 2), np.uint8), np.array([0, 1]), ["a", "b"], "toy")
