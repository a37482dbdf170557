"""Datasets in memory, and :func:`load_dataset`, which finds one by name or path.

A known name (``mnist``, ``fashion-mnist``, ``cifar10``) is looked for in ``data_dir/<name>/``,
then ``$CNNLANG_DATA/<name>/``, then the download cache, and downloaded there if allowed. A path
is read according to what it holds: IDX files with the standard MNIST names, CIFAR-10 binaries
(or their tarball), or an image folder with one subfolder per class. A known name wins over a
folder of the same name (write ``./mnist`` for the folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import cifar, folder as image_folder
from .download import KNOWN_DATASETS, Progress, cache_dir, canonical_name, download_dataset, known_dataset
from .errors import DataError
from .idx import read_idx
from .transforms import fit_to_input

SPLITS = ("train", "test")
IDX_STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class Dataset:
    """Images (N x C x H x W uint8), labels (int64, N), class names and a name for messages."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DataError(f"{self.name}: expected N x C x H x W uint8 images, got {self.images.dtype} "
                            f"{'x'.join(map(str, self.images.shape))}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"{self.name}: {len(self.images):,} images but labels of shape {self.labels.shape}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"{self.name}: labels run from {self.labels.min()} to {self.labels.max()}, "
                            f"expected 0-{len(self.classes) - 1} for {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C, H, W of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: np.ndarray, name: str | None = None) -> "Dataset":
        return Dataset(self.images[indices], self.labels[indices], list(self.classes), name or self.name)

    def fitted(self, input_shape: tuple[int, ...]) -> "Dataset":
        """The same examples with images fitted to a network's input (:func:`fit_to_input`)."""
        return Dataset(fit_to_input(self.images, input_shape), self.labels, self.classes, self.name)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}' (expected 'train' or 'test')")


def _idx_file(folder: Path, stem: str) -> Path | None:
    # The gzip header keeps the original dotted name, so `gunzip -N` gives train-images.idx3-ubyte.
    dotted = stem.replace("-idx", ".idx", 1)
    for name in (stem + ".gz", stem, dotted, dotted + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx(folder: Path, split: str) -> bool:
    return all(_idx_file(folder, stem) is not None for stem in IDX_STEMS[split])


def read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 1 x H x W uint8) and labels (int64) of an MNIST-style split in ``folder``."""
    image_stem, label_stem = IDX_STEMS[split]
    image_path, label_path = _idx_file(folder, image_stem), _idx_file(folder, label_stem)
    if image_path is None or label_path is None:
        raise DataError(f"{folder}: missing {image_stem if image_path is None else label_stem}[.gz] "
                        f"for the {split} split")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{image_path.name}: expected N x H x W uint8 images, found {images.dtype} "
                        f"{'x'.join(map(str, images.shape))}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path.name}: expected one integer label per image, found {labels.dtype} "
                        f"{'x'.join(map(str, labels.shape))}")
    if len(labels) != len(images):
        raise DataError(f"{label_path.name}: {len(labels):,} labels but {image_path.name} has {len(images):,} images")
    return images[:, None], labels.astype(np.int64)


def _has_files(folder: Path, format: str, split: str) -> bool:
    if not folder.is_dir():
        return False
    return has_idx(folder, split) if format == "idx" else cifar.find_cifar(folder) is not None


def _read_known(location: Path, name: str, split: str) -> Dataset:
    dataset = known_dataset(name)
    if dataset.format == "idx":
        images, labels = read_idx_split(location, split)
        classes = list(dataset.classes)
    else:
        images, labels, classes = cifar.read_cifar10(location, split)
    return Dataset(images, labels, classes, f"{name} ({split})")


def _load_known(name: str, split: str, data_dir: str | Path | None, download: bool,
                mirror: str | None, progress: Progress | None) -> Dataset:
    dataset = known_dataset(name)
    places = [Path(data_dir) / name] if data_dir is not None else []
    if os.environ.get("CNNLANG_DATA"):
        places.append(Path(os.environ["CNNLANG_DATA"]) / name)
    cached = cache_dir() / name
    places.append(cached)
    for place in places:
        if _has_files(place, dataset.format, split):
            return _read_known(place, name, split)
    if not download:
        files = ", ".join(f.name for f in dataset.files)
        raise DataError(f"{name}: not found in {', '.join(str(p) for p in places)} and downloading is off; "
                        f"place {files} in {places[0]}")
    return _read_known(download_dataset(name, cached.parent, mirror, progress), name, split)


def _load_path(path: Path, split: str, image_size: int | tuple[int, int] | None, channels: int | None) -> Dataset:
    label = f"{path.name} ({split})"
    if path.is_dir() and (has_idx(path, "train") or has_idx(path, "test")):
        images, labels = read_idx_split(path, split)
        classes = [str(c) for c in range(int(labels.max()) + 1 if len(labels) else 0)]
        return Dataset(images, labels, classes, label)
    if cifar.find_cifar(path) is not None:
        images, labels, classes = cifar.read_cifar10(path, split)
        return Dataset(images, labels, classes, label)
    if image_folder.looks_like_image_folder(path):
        images, labels, classes = image_folder.read_image_folder(path, split, channels, image_size)
        return Dataset(images, labels, classes, label)
    raise DataError(
        f"{path}: no dataset found: expected MNIST-style IDX files (train-images-idx3-ubyte.gz and so on), "
        f"CIFAR-10 binaries ({cifar.FOLDER_NAME}/ or {cifar.ARCHIVE_NAME}), or one subfolder of images per class")


def load_dataset(spec: str, split: str = "train", data_dir: str | Path | None = None, download: bool = True,
                 mirror: str | None = None, progress: Progress | None = None,
                 image_size: int | tuple[int, int] | None = None, channels: int | None = None) -> Dataset:
    """One split ("train" or "test") of a known dataset or of the dataset at a path.

    ``image_size`` and ``channels`` apply to image folders (resize, grey or RGB); the fixed-size
    formats come as stored (adapt them to a network with :func:`fit_to_input`). ``progress`` is
    called as ``progress(file_name, bytes_done, bytes_total_or_None)`` while downloading."""
    _check_split(split)
    name = canonical_name(spec)
    if name is not None:
        return _load_known(name, split, data_dir, download, mirror, progress)
    path = Path(spec).expanduser()
    if path.exists():
        return _load_path(path, split, image_size, channels)
    raise DataError(f"unknown dataset '{spec}': neither a known name ({', '.join(KNOWN_DATASETS)}) "
                    "nor an existing file or folder")
