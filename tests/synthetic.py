"""A small learnable dataset and model for training tests (no download, trains in seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlang.data import write_idx

MODEL = """
network tiny {
    input 1x12x12
    conv(6, 3x3, pad = 1) -> batchnorm -> relu
    maxpool(2x2, stride = 2)
    dropout(0.2)
    flatten
    fc(4)
}
"""


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k is a bright 4x4 square in quadrant k, on noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, 12, 12)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 6 * (k // 2) + 1, 6 * (k % 2) + 1
        images[i, r:r + 4, c:c + 4] = 220
    return images, labels


def write_digits(folder: Path) -> Path:
    """A train and a test split in MNIST's IDX layout (an IDX folder `--data` accepts)."""
    for split, count, seed in (("train", 512, 1), ("t10k", 128, 2)):
        images, labels = synthetic_digits(count, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder
