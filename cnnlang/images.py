"""The one way cnnlang reads an image (Pillow): ``cnnlang run IMAGE`` and training on a folder of
images preprocess alike, so a network sees at run time what it was trained on.

An image is converted to grey ("L") or colour ("RGB"); given a target size it is resized so that
it covers the target with its aspect ratio kept (bilinear), then centre-cropped to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm")


class UnreadableImage(ValueError):
    """Pillow could not read the file; the message says why."""


def fit_size(image, size: tuple[int, int]):
    """Resize a Pillow image so it covers ``size`` (H, W) with its aspect ratio kept, then
    centre-crop it to ``size``."""
    from PIL import Image

    height, width = size
    if (image.height, image.width) == (height, width):
        return image
    scale = max(height / image.height, width / image.width)
    new_w = max(width, round(image.width * scale))
    new_h = max(height, round(image.height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - width) // 2, (new_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def open_image(path: str | Path):
    """The decoded Pillow image at ``path``; UnreadableImage if it is not one."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"{path}: not a readable image ({error})") from None


def read_image(path: str | Path, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` in ``mode`` ("L" or "RGB"), fitted to ``size`` (H, W) when given,
    as uint8 H x W (grey) or H x W x 3."""
    image = open_image(path).convert(mode)
    if size is not None:
        image = fit_size(image, size)
    return np.asarray(image, dtype=np.uint8)
