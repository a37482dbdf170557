"""A folder of images with one subfolder per class, read with Pillow.

Layout: ``root/<class>/<image>``, or ``root/train/<class>/...`` and ``root/test/<class>/...``
(``val/`` may stand for ``test/``). Class names are the subfolder names, sorted; a label is the
index of its class. Images are read as grey ("L") or colour ("RGB") by cnnlang/images.py, the
reader ``cnnlang run IMAGE`` uses too; without a target size they must all be the same size. With
one, each image is resized so that it covers the target (bilinear), then centre-cropped to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..images import SUFFIXES, UnreadableImage, fit_size, open_header, open_image
from .errors import DataError

IMAGE_SUFFIXES = set(SUFFIXES)
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def looks_like_image_folder(root: Path) -> bool:
    """Whether ``root`` (or its train/ subfolder) has class subfolders holding images."""
    base = root / "train" if (root / "train").is_dir() else root
    return root.is_dir() and any(_images_in(sub) for sub in _subfolders(base))


def split_folder(root: Path, split: str) -> Path:
    """The folder holding the class folders of ``split``."""
    if split not in SPLIT_FOLDERS:
        raise DataError(f"unknown split '{split}' (expected 'train' or 'test')")
    has_splits = any((root / name).is_dir() for names in SPLIT_FOLDERS.values() for name in names)
    if not has_splits:
        if split == "train":
            return root
        raise DataError(f"{root}: no test/ or val/ subfolder, so there is no test split; "
                        "hold out part of the training images as a validation set instead")
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: expected a {' or '.join(n + '/' for n in SPLIT_FOLDERS[split])} subfolder "
                    f"for the {split} split")


def list_images(folder: Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Every image file under ``folder``'s class subfolders, their labels and the class names."""
    classes = _subfolders(folder)
    if not classes:
        raise DataError(f"{folder}: no class subfolders (expected one folder of images per class)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, class_folder in enumerate(classes):
        images = _images_in(class_folder)
        if not images:
            raise DataError(f"{class_folder}: empty class folder (expected images with one of the "
                            f"suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += images
        labels += [label] * len(images)
    return paths, np.asarray(labels, dtype=np.int64), [c.name for c in classes]


def _open(path: Path) -> Image.Image:
    try:
        return open_image(path)
    except UnreadableImage as error:
        raise DataError(str(error)) from None


def _choose_mode(paths: list[Path], channels: int | None) -> str:
    if channels is not None:
        if channels not in (1, 3):
            raise DataError(f"images can be read with 1 (grey) or 3 (RGB) channels, not {channels}")
        return "L" if channels == 1 else "RGB"
    for path in paths:
        try:
            with open_header(path) as image:  # the header only
                if image.mode not in GREY_MODES:
                    return "RGB"
        except UnreadableImage as error:
            raise DataError(str(error)) from None
    return "L"


def read_image_folder(root: str | Path, split: str = "train", channels: int | None = None,
                      image_size: int | tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N x C x H x W uint8), labels (int64) and class names of one split. ``channels``
    picks grey (1) or RGB (3); by default grey when every image is grey. ``image_size`` (an int
    for square, or (H, W)) resizes; without it all images must share one size."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    paths, labels, classes = list_images(split_folder(root, split))
    mode = _choose_mode(paths, channels)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    arrays: list[np.ndarray] = []
    for path in paths:
        image = _open(path).convert(mode)
        if size is not None:
            image = fit_size(image, size)
        elif arrays and (image.height, image.width) != arrays[0].shape[:2]:
            first = arrays[0].shape
            raise DataError(f"{path}: {image.height}x{image.width} pixels but {paths[0].name} is "
                            f"{first[0]}x{first[1]}; images of different sizes need a target size "
                            "(shorter side resized to it, then centre-cropped)")
        arrays.append(np.asarray(image, dtype=np.uint8))
    images = np.stack(arrays)
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images), labels, classes
