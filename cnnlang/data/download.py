"""Known datasets and their files, downloaded into a cache with checksums checked.

Fetching is pooch's job (a well-kept library for exactly this: it downloads to a temporary file,
checks the known hash, retries, and only then moves the file into place, so the cache never holds
a partial or corrupt file). Files go to cnnlang's cache (cnnlang/cache.py: ``CNNLANG_CACHE``, else
platformdirs' per-user cache directory, ``~/.cache/cnnlang`` on Linux). ``CNNLANG_DATA_MIRROR`` (or ``mirror=``)
replaces the publishers' URLs with ``{mirror}/{dataset}/{file}``, the same layout as the cache.
Nothing here prints: pass ``progress(file_name, bytes_done, bytes_total_or_None)`` to show
progress.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cache import user_cache_dir
from .errors import DataError

Progress = Callable[[str, int, "int | None"], None]
CHUNK = 1 << 20
TIMEOUT_S = 60
RETRIES = 2  # per URL, after the first try (pooch waits 1 s, then 2 s)


@dataclass(frozen=True)
class RemoteFile:
    name: str
    urls: tuple[str, ...]
    md5: str  # as published by the dataset's authors
    sha256: str | None = None  # computed from the genuine files, where we have them
    size: int | None = None


@dataclass(frozen=True)
class KnownDataset:
    name: str
    format: str  # "idx" or "cifar"
    files: tuple[RemoteFile, ...]
    classes: tuple[str, ...]


def _idx_files(bases: tuple[str, ...], md5s: dict[str, str], sha256s: dict[str, str] | None = None,
               sizes: dict[str, int] | None = None) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(name, tuple(base + name for base in bases), md5, (sha256s or {}).get(name), (sizes or {}).get(name))
        for name, md5 in md5s.items()
    )


MNIST = KnownDataset(
    "mnist", "idx",
    _idx_files(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        {
            "train-images-idx3-ubyte.gz": 9_912_422,
            "train-labels-idx1-ubyte.gz": 28_881,
            "t10k-images-idx3-ubyte.gz": 1_648_877,
            "t10k-labels-idx1-ubyte.gz": 4_542,
        },
    ),
    tuple(str(digit) for digit in range(10)),
)

FASHION_MNIST = KnownDataset(
    "fashion-mnist", "idx",
    _idx_files(
        ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
         "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)

CIFAR10 = KnownDataset(
    "cifar10", "cifar",
    (RemoteFile("cifar-10-binary.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",),
                "c32a1d4ab5d03f1284b67883e8d87530", size=170_052_171),),
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
)

KNOWN_DATASETS: dict[str, KnownDataset] = {d.name: d for d in (MNIST, FASHION_MNIST, CIFAR10)}
ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar_10": "cifar10"}


def canonical_name(name: str) -> str | None:
    """The registry name for ``name`` (case and common spellings ignored), or None."""
    name = name.lower()
    name = ALIASES.get(name, name)
    return name if name in KNOWN_DATASETS else None


def known_dataset(name: str) -> KnownDataset:
    try:
        return KNOWN_DATASETS[canonical_name(name) or name]
    except KeyError:
        raise DataError(f"unknown dataset '{name}'; the known datasets are: {', '.join(KNOWN_DATASETS)}") from None


def cache_dir() -> Path:
    """Where downloads go: cnnlang's cache (``$CNNLANG_CACHE``, else the user's cache directory)."""
    return user_cache_dir()


def source_urls(dataset: KnownDataset, remote: RemoteFile, mirror: str | None = None) -> tuple[str, ...]:
    """The URLs to try, in order: the mirror's (``mirror`` or ``$CNNLANG_DATA_MIRROR``) alone if
    one is set, else the publisher's."""
    mirror = mirror or os.environ.get("CNNLANG_DATA_MIRROR")
    if mirror:
        return (f"{mirror.rstrip('/')}/{dataset.name}/{remote.name}",)
    return remote.urls


class _ProgressBar:
    """The progress-bar object pooch's HTTP downloader drives, reporting to a ``Progress``."""

    def __init__(self, name: str, progress: Progress):
        self.name, self.progress = name, progress
        self.total: int | None = None
        self.done = 0

    def update(self, count: int) -> None:
        # pooch counts whole chunks; the last one may be short
        self.done = min(self.done + count, self.total) if self.total else self.done + count
        self.progress(self.name, self.done, self.total or None)

    def reset(self) -> None:
        self.done = 0
        self.progress(self.name, 0, self.total or None)

    def close(self) -> None:
        pass


def _describe(error: Exception) -> str:
    response = getattr(error, "response", None)
    if response is not None:
        return f"HTTP {response.status_code} {response.reason}"
    if isinstance(error, ValueError):  # pooch's hash check
        return f"checksum mismatch: {error}"
    return str(error) or type(error).__name__


def download_file(dataset: KnownDataset, remote: RemoteFile, folder: Path, mirror: str | None = None,
                  progress: Progress | None = None) -> Path:
    """Fetch one file into ``folder`` (trying each URL in turn), verified against the strongest
    known hash, moved into place only when it matches."""
    import pooch
    import requests

    pooch.get_logger().setLevel(logging.WARNING)  # it logs every download and retry at INFO
    known_hash = f"sha256:{remote.sha256}" if remote.sha256 else f"md5:{remote.md5}"
    target = folder / remote.name
    failures: list[str] = []
    for url in source_urls(dataset, remote, mirror):
        fetcher = pooch.create(path=folder, base_url="", registry={remote.name: known_hash},
                               urls={remote.name: url}, retry_if_failed=RETRIES)
        bar = _ProgressBar(remote.name, progress) if progress else False
        downloader = pooch.HTTPDownloader(progressbar=bar, timeout=TIMEOUT_S, headers={"User-Agent": "cnnlang"})
        try:
            return Path(fetcher.fetch(remote.name, downloader=downloader))
        except (OSError, ValueError, requests.exceptions.RequestException) as error:
            failures.append(f"{url}: {_describe(error)}")
    raise DataError(f"could not download {dataset.name}/{remote.name} ({'; '.join(failures)}); download it by "
                    f"hand and place it at {target}, or under {dataset.name}/ in a folder given by --data-dir or CNNLANG_DATA")


def download_dataset(name: str, cache: str | Path | None = None, mirror: str | None = None,
                     progress: Progress | None = None) -> Path:
    """The folder ``cache/<name>`` with every file of the dataset, downloading those missing."""
    dataset = known_dataset(name)
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / dataset.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{folder}: cannot create the download folder: {error.strerror or error}") from None
    for remote in dataset.files:
        if not (folder / remote.name).is_file():
            download_file(dataset, remote, folder, mirror, progress)
    return folder


def file_digests(path: str | Path) -> tuple[str, str]:
    """The MD5 and SHA-256 of a file, read in chunks."""
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()
