"""Downloads against a local HTTP server: verified files, no second download, bad checksums and
missing files."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from cnnlang.data import DataError, download_dataset, load_dataset
from cnnlang.data.download import KNOWN_DATASETS, MNIST, file_digests

MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_registry_lists_the_known_datasets():
    assert list(KNOWN_DATASETS) == ["mnist", "fashion-mnist", "cifar10"]
    assert [f.name for f in KNOWN_DATASETS["fashion-mnist"].files] == list(MNIST_FILES)
    assert KNOWN_DATASETS["cifar10"].files[0].urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",)
    for dataset in KNOWN_DATASETS.values():
        assert len(dataset.classes) == 10
        for remote in dataset.files:
            assert len(remote.md5) == 32 and all(url.startswith("http") for url in remote.urls)


def test_recorded_digests_match_the_genuine_files(mnist_root):
    for remote in MNIST.files:
        md5, sha256 = file_digests(mnist_root / "mnist" / remote.name)
        assert (md5, sha256) == (remote.md5, remote.sha256)
        assert (mnist_root / "mnist" / remote.name).stat().st_size == remote.size


def test_download_mnist_from_a_mirror(tmp_path, mnist_root, serve, monkeypatch):
    monkeypatch.delenv("CNNLANG_DATA", raising=False)
    monkeypatch.setenv("CNNLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLANG_DATA_MIRROR", serve(mnist_root))
    seen = []
    folder = download_dataset("mnist", progress=lambda name, done, total: seen.append((name, done, total)))
    assert folder == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)  # no temporary files left
    for name in MNIST_FILES:
        assert (folder / name).read_bytes() == (mnist_root / "mnist" / name).read_bytes()
    assert ("t10k-labels-idx1-ubyte.gz", 4542, 4542) in seen and ("t10k-labels-idx1-ubyte.gz", 0, 4542) in seen

    # Found in the cache now: no request reaches the (now dead) mirror.
    monkeypatch.setenv("CNNLANG_DATA_MIRROR", "http://127.0.0.1:9")
    seen.clear()
    test = load_dataset("mnist", "test", progress=lambda *a: seen.append(a))
    assert seen == [] and test.images.shape == (10_000, 1, 28, 28) and list(test.labels[:3]) == [7, 2, 1]


def test_checksum_mismatch_leaves_nothing(tmp_path, mnist_root, serve):
    mirror = tmp_path / "mirror" / "mnist"
    mirror.mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copyfile(mnist_root / "mnist" / name, mirror / name)
    data = bytearray((mirror / "t10k-labels-idx1-ubyte.gz").read_bytes())
    data[100] ^= 0xFF
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(data))
    actual = hashlib.sha256(bytes(data)).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        download_dataset("mnist", cache, mirror=serve(tmp_path / "mirror"))
    message = str(info.value)
    assert message.startswith("could not download mnist/t10k-labels-idx1-ubyte.gz (http://127.0.0.1:")
    assert "checksum mismatch" in message and MNIST.files[3].sha256 in message and actual in message
    # nothing partial or corrupt is left, only the three good files
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(MNIST_FILES[:3])


def test_missing_file_on_the_mirror(tmp_path, serve):
    (tmp_path / "empty").mkdir()
    mirror = serve(tmp_path / "empty")
    with pytest.raises(DataError) as info:
        download_dataset("fashion-mnist", tmp_path / "cache", mirror=mirror)
    message = str(info.value)
    assert message.startswith("could not download fashion-mnist/train-images-idx3-ubyte.gz")
    assert f"{mirror}/fashion-mnist/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert "place it at " + str(tmp_path / "cache" / "fashion-mnist" / "train-images-idx3-ubyte.gz") in message
    assert list((tmp_path / "cache" / "fashion-mnist").iterdir()) == []


def test_unreachable_mirror(tmp_path):
    with pytest.raises(DataError, match=r"could not download cifar10/cifar-10-binary\.tar\.gz "
                                        r"\(http://127\.0\.0\.1:9/"):
        download_dataset("cifar10", tmp_path, mirror="http://127.0.0.1:9/")


def test_no_download_lists_places(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLANG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLANG_DATA", str(tmp_path / "env"))
    with pytest.raises(DataError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "given", download=False)
    message = str(info.value)
    for place in ("given", "env", "cache"):
        assert str(tmp_path / place / "fashion-mnist") in message
    assert "downloading is off" in message and np.all([f in message for f in MNIST_FILES])
