"""Reading a network input from a file: a NumPy ``.npy`` array or an image (Pillow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UsageError
from .images import SUFFIXES as IMAGE_SUFFIXES
from .images import UnreadableImage, read_image
from .layers import format_shape
from .resources import zoo_dir


class InputFileError(UsageError):
    """An input file that is missing, unreadable or of the wrong shape; the message says what was expected."""


ZOO_PREFIX = "zoo:"


def read_input(path: str | Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """An N x input_shape float array from ``path``.

    ``.npy``: an array of input_shape (one example) or N x input_shape, loaded without pickle.
    Images: converted to grey (1 channel) or RGB (3 channels), fitted to H x W as training on a
    folder of images does (scaled to cover, centre-cropped: cnnlang/images.py), scaled to [0, 1].
    ``zoo:NAME`` names a file shipped in the zoo (``zoo:lecture/sample.png``); a comma-separated
    list of numbers (``1.0,1.1,1.2``) is the input itself, filled in row-major order.
    """
    if is_value_list(str(path)):
        return _parse_values(str(path), input_shape)
    path = bundled_file(str(path)) if str(path).startswith(ZOO_PREFIX) else Path(path)
    expected = format_shape(input_shape)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file (expected a .npy array of {expected} or an image)")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as error:  # noqa: BLE001 - numpy raises several kinds for a bad file
            raise InputFileError(f"{path}: not a readable .npy array ({error})") from None
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputFileError(f"{path}: expected numbers, got an array of {array.dtype}")
        if array.shape == tuple(input_shape):
            array = array[None]
        if array.shape[1:] != tuple(input_shape) or array.ndim != len(input_shape) + 1 or array.shape[0] == 0:
            raise InputFileError(
                f"{path}: the array is {format_shape(array.shape)}, but the model expects {expected} "
                f"(one example) or N x {expected}"
            )
        return array
    if suffix in IMAGE_SUFFIXES:
        return _read_image(path, input_shape)[None]
    raise InputFileError(f"{path}: expected a .npy array of {expected} or an image ({', '.join(IMAGE_SUFFIXES)})")


def _read_image(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise InputFileError(
            f"{path}: an image can feed a 1 x H x W (grey) or 3 x H x W (RGB) input, "
            f"but this model expects {format_shape(input_shape)}; give a .npy array instead"
        )
    channels, height, width = input_shape
    try:
        pixels = read_image(path, "L" if channels == 1 else "RGB", (height, width)).astype(np.float32) / 255.0
    except UnreadableImage as error:
        raise InputFileError(str(error)) from None
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def is_value_list(text: str) -> bool:
    """Whether ``text`` reads as numbers separated by commas (at least two of them)."""
    parts = text.split(",")
    if len(parts) < 2:
        return False
    try:
        [float(part) for part in parts]
    except ValueError:
        return False
    return True


def is_image(text: str) -> bool:
    return not is_value_list(text) and Path(text).suffix.lower() in IMAGE_SUFFIXES


def bundled_file(text: str) -> Path:
    """The file that ``zoo:NAME`` names inside the installed zoo folder."""
    name = text[len(ZOO_PREFIX):]
    zoo = zoo_dir().resolve()
    path = (zoo / name).resolve()
    if not path.is_relative_to(zoo) or not path.is_file():
        raise InputFileError(f"{text}: no such file in the zoo (zoo:lecture/sample.png names one)")
    return path


def _parse_values(text: str, input_shape: tuple[int, ...]) -> np.ndarray:
    values = np.array([float(part) for part in text.split(",")])
    size = int(np.prod(input_shape))
    if values.size % size:
        raise InputFileError(
            f"{values.size} values given, but the model expects {format_shape(input_shape)} = {size} values "
            f"per example (or a multiple of {size} for several examples)"
        )
    return values.reshape(-1, *input_shape)
