"""A folder of images with one subfolder per class, read with Pillow.

Layout: ``root/<class>/<image>``, or ``root/train/<class>/...`` and ``root/test/<class>/...``
(``val/`` may stand for ``test/``). Class names are the subfolder names, sorted; a label is the
index of its class. Images are read as grey ("L") or colour ("RGB"); without a target size they
must all be the same size. With one, each image is resized so its shorter side fits the target
(bilinear), then centre-cropped to it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
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


# Pillow's decompression-bomb threshold (about 89 M pixels), checked from the header before
# any pixel is decoded, so an image declaring 400 M pixels is one clear error.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS
_UNREADABLE = (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError)


def _open_header(path: Path) -> Image.Image:
    """The image with only its header read, refused when it declares more than MAX_PIXELS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in words
        image = Image.open(path)
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise DataError(f"{path}: the image declares {image.width} x {image.height} = {image.width * image.height:,} "
                        f"pixels, more than the {MAX_PIXELS:,} cnnlang decodes; a training image is far smaller")
    return image


def _open(path: Path) -> Image.Image:
    try:
        image = _open_header(path)
        image.load()
        return image
    except _UNREADABLE as error:
        raise DataError(f"{path}: cannot read the image ({error})") from None


def fit_size(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize so the image covers ``size`` (H, W) with its aspect ratio kept, then centre-crop."""
    height, width = size
    if (image.height, image.width) == (height, width):
        return image
    scale = max(height / image.height, width / image.width)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def _choose_mode(paths: list[Path], channels: int | None) -> str:
    if channels is not None:
        if channels not in (1, 3):
            raise DataError(f"images can be read with 1 (grey) or 3 (RGB) channels, not {channels}")
        return "L" if channels == 1 else "RGB"
    for path in paths:
        try:
            with _open_header(path) as image:
                if image.mode not in GREY_MODES:
                    return "RGB"
        except _UNREADABLE as error:
            raise DataError(f"{path}: cannot read the image ({error})") from None
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
