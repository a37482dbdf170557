"""The one way cnnlang reads an image (Pillow): ``cnnlang run IMAGE`` and training on a folder of
images preprocess alike, so a network sees at run time what it was trained on.

An image is converted to grey ("L") or colour ("RGB"); given a target size it is resized so that
it covers the target with its aspect ratio kept (bilinear), then centre-cropped to it. An image
that declares more pixels than Pillow's decompression-bomb threshold (about 89 M) is refused from
its header, before any pixel is decoded.
"""

from __future__ import annotations

import warnings
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


def max_pixels() -> int:
    """The most pixels cnnlang decodes: Pillow's decompression-bomb threshold."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def open_header(path: str | Path):
    """The Pillow image at ``path`` with only its header read; UnreadableImage if it is not an
    image or declares more than :func:`max_pixels`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, in words
            image = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"{path}: not a readable image ({error})") from None
    if image.width * image.height > max_pixels():
        image.close()
        raise UnreadableImage(
            f"{path}: the image declares {image.width} x {image.height} = {image.width * image.height:,} pixels, "
            f"more than the {max_pixels():,} cnnlang decodes"
        )
    return image


def open_image(path: str | Path):
    """The decoded Pillow image at ``path``; UnreadableImage if it is not one (or too large)."""
    from PIL import Image, UnidentifiedImageError

    image = open_header(path)
    try:
        image.load()
        return image
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"{path}: not a readable image ({error})") from None


def read_image(path: str | Path, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """The image at ``path`` in ``mode`` ("L" or "RGB"), fitted to ``size`` (H, W) when given,
    as uint8 H x W (grey) or H x W x 3."""
    image = open_image(path).convert(mode)
    if size is not None:
        image = fit_size(image, size)
    return np.asarray(image, dtype=np.uint8)
