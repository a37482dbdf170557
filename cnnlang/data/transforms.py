"""Fitting images to a network's input, normalisation, and random augmentations of a batch.

Augmentations take an explicit ``np.random.Generator`` so that a batch's randomness is fixed by
whoever seeds it (see :class:`cnnlang.data.batches.Batches`).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import numpy as np

from .errors import DataError


def _size(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def fit_to_input(images: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """Make N x C x H x W images fit a network input (C, H, W): zero-pad symmetrically when they
    are smaller, up to 4x the area (an odd difference puts the extra row/column at the
    bottom/right), repeat a grey
    channel to 3 when the network wants colour, and return them unchanged when they already fit."""
    if images.ndim != 4:
        raise DataError(f"expected images of shape N x C x H x W, got {_size(images.shape)}")
    channels, height, width = (int(s) for s in input_shape)
    c, h, w = images.shape[1:]
    if c != channels and not (c == 1 and channels == 3):
        kind = "grey" if c == 1 else "colour" if c == 3 else f"{c}-channel"
        raise DataError(f"the images are {_size((c, h, w))} ({kind}) but the network expects "
                        f"{_size(input_shape)}: {c} channel(s) cannot become {channels}; use "
                        f"--input {_size((c, height, width))} to change the network's input")
    if h > height or w > width:
        raise DataError(f"the images are {_size((c, h, w))} but the network expects {_size(input_shape)}: "
                        f"images larger than the input are not cropped; use --input {_size((channels, h, w))} "
                        "to change the network's input size")
    if height * width > 4 * h * w:
        # Padding is for a few pixels (MNIST's 28 to LeNet-5's 32); a small image in a large input
        # would be mostly zeros, and a dataset of them may not even fit in memory.
        raise DataError(f"the images are {h}x{w} but the network expects {height}x{width}: padding would make "
                        f"them mostly zeros; train the network at the images' size with --input "
                        f"{_size((channels, h, w))}")
    if c != channels:
        images = np.repeat(images, channels, axis=1)
    if (h, w) != (height, width):
        top, left = (height - h) // 2, (width - w) // 2
        images = np.pad(images, ((0, 0), (0, 0), (top, height - h - top), (left, width - w - left)))
    return images


class Normalizer:
    """``(pixel / 255 - mean[c]) / std[c]``, with mean and std per channel in [0, 1] units (so
    MNIST's are about 0.1307 and 0.3081)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]
        if len(self.mean) != len(self.std) or not self.mean:
            raise DataError(f"normaliser: expected one mean and one std per channel, got {len(self.mean)} "
                            f"means and {len(self.std)} stds")
        if not all(np.isfinite(self.mean)) or not all(s > 0 and np.isfinite(s) for s in self.std):
            raise DataError(f"normaliser: expected finite means and positive stds, "
                            f"got mean {self.mean}, std {self.std}")
        # pixel * scale + shift, per channel
        self._scale = 1.0 / (255.0 * np.asarray(self.std))
        self._shift = -np.asarray(self.mean) / np.asarray(self.std)

    @classmethod
    def from_images(cls, images: np.ndarray) -> "Normalizer":
        """Per-channel mean and (population) std of N x C x H x W uint8 training images."""
        if images.ndim != 4 or images.dtype != np.uint8 or images.size == 0:
            raise DataError(f"normaliser: expected non-empty N x C x H x W uint8 images, got "
                            f"{images.dtype} {_size(images.shape)}")
        values = np.arange(256, dtype=np.float64) / 255
        means, stds = [], []
        for channel in range(images.shape[1]):
            # A histogram gives exact float64 statistics without a float copy of every pixel.
            counts = np.bincount(images[:, channel].ravel(), minlength=256).astype(np.float64)
            total = counts.sum()
            mean = float(counts @ values / total)
            std = float(np.sqrt(counts @ (values - mean) ** 2 / total))
            means.append(mean)
            # A constant channel carries no information; std 1 keeps it finite instead of dividing by 0.
            stds.append(std if std > 0 else 1.0)
        return cls(means, stds)

    def __call__(self, batch: np.ndarray, dtype: Any = np.float32) -> np.ndarray:
        if batch.ndim != 4 or batch.shape[1] != len(self.mean):
            raise DataError(f"normaliser: expected N x {len(self.mean)} x H x W images, got {_size(batch.shape)}")
        dtype = np.dtype(dtype)
        out = batch.astype(dtype)
        out *= self._scale.astype(dtype)[None, :, None, None]
        out += self._shift.astype(dtype)[None, :, None, None]
        return out

    def state(self) -> dict[str, list[float]]:
        """A JSON-able description, read back by :meth:`from_state`."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_state(cls, state: Any) -> "Normalizer":
        if not isinstance(state, dict) or not {"mean", "std"} <= set(state):
            raise DataError(f"normaliser: expected a mapping with 'mean' and 'std', got {state!r}")
        try:
            return cls(state["mean"], state["std"])
        except (TypeError, ValueError):
            raise DataError(f"normaliser: expected lists of numbers, got {state!r}") from None

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> "Normalizer | None":
        """The normaliser a weight file written by `cnnlang train` records, or None."""
        if "normalizer" not in metadata:
            return None
        try:
            return cls.from_state(json.loads(metadata["normalizer"]))
        except json.JSONDecodeError:
            raise DataError(f"normaliser: the weight file's record is not JSON: {metadata['normalizer']!r}") from None

    def __repr__(self) -> str:
        return f"Normalizer(mean={self.mean}, std={self.std})"


def random_crop(batch: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad each image by ``padding`` on every side, then cut it back to its size at a random
    offset (uniform over the 2*padding+1 positions each way), drawn per image."""
    if padding <= 0:
        return batch
    n, _, h, w = batch.shape
    padded = np.pad(batch, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    out = np.empty_like(batch)
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out


def random_flip(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirror each image left-right with probability 1/2."""
    flip = rng.random(len(batch)) < 0.5
    out = batch.copy()
    out[flip] = batch[flip, :, :, ::-1]
    return out
