"""Mini-batches for one epoch, reproducible from (seed, epoch, batch index), and a seeded
train/validation split.

Epoch ``e`` visits the images in the order ``default_rng([seed, e]).permutation(N)``; batch
``b``'s augmentation draws from a generator seeded by (seed, e, b). So a run resumed at (epoch,
batch) sees exactly what an uninterrupted run would have, and skipping batches costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .datasets import Dataset
from .errors import DataError
from .transforms import Normalizer, random_crop, random_flip

# numpy seeds [s, e] and [s, e, 0] alike (trailing zeros are padding), so each use of a seed
# ends in its own non-zero tag to keep the streams apart.
_AUGMENT_TAG = 0x61756720
_SPLIT_TAG = 0x73706C74


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation: random crop after zero-padding, and left-right flips."""

    crop_padding: int = 0
    flip: bool = False


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"the seed must be a non-negative integer, got {seed!r}")


class Batches:
    """One epoch of ``(images, labels)`` batches: images float (normalised, or scaled to [0, 1]
    without a normaliser), labels int64. ``len()`` is the number of batches in the epoch."""

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 normalizer: Normalizer | None = None, augment: Augment | None = None, drop_last: bool = False,
                 dtype: Any = np.float32, start_batch: int = 0, shard: tuple[int, int] = (0, 1)) -> None:
        _check_seed(seed)
        if batch_size < 1:
            raise DataError(f"the batch size must be at least 1, got {batch_size}")
        if epoch < 0:
            raise DataError(f"the epoch must be non-negative, got {epoch}")
        self.dataset, self.batch_size, self.shuffle = dataset, int(batch_size), shuffle
        self.seed, self.epoch, self.normalizer = int(seed), int(epoch), normalizer
        self.augment, self.drop_last, self.dtype = augment or Augment(), drop_last, np.dtype(dtype)
        if not 0 <= start_batch <= len(self):
            raise DataError(f"start batch {start_batch} is outside the epoch's {len(self)} batches")
        self.start_batch = int(start_batch)
        # (rank, ranks): yield only this rank's part of each batch (data-parallel training).
        self.shard = shard

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def order(self) -> np.ndarray:
        """The epoch's image indices, in visiting order."""
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def batch(self, index: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of the epoch, computed on its own."""
        order = self.order() if order is None else order
        chosen = order[index * self.batch_size:(index + 1) * self.batch_size]
        part = shard_slice(len(chosen), *self.shard)
        augmented = self.augment.crop_padding or self.augment.flip
        if not augmented:
            chosen = chosen[part]
        images, labels = self.dataset.images[chosen], self.dataset.labels[chosen]
        if augmented:
            # The whole batch draws its augmentation, so a shard sees what one process would.
            rng = np.random.default_rng([self.seed, self.epoch, index, _AUGMENT_TAG])
            images = random_crop(images, self.augment.crop_padding, rng)
            if self.augment.flip:
                images = random_flip(images, rng)
            images, labels = images[part], labels[part]
        if self.normalizer is not None:
            return self.normalizer(images, self.dtype), labels
        scaled = images.astype(self.dtype)
        scaled /= self.dtype.type(255)
        return scaled, labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.order()
        for index in range(self.start_batch, len(self)):
            yield self.batch(index, order)


def shard_slice(count: int, rank: int, ranks: int) -> slice:
    """Rank ``rank``'s contiguous part of ``count`` items split over ``ranks``: sizes differ by
    at most one, and the parts in rank order are the whole."""
    return slice(rank * count // ranks, (rank + 1) * count // ranks)


def split_validation(dataset: Dataset, size: float | int, seed: int = 0,
                     stratify: bool = False) -> tuple[Dataset, Dataset]:
    """A seeded random split into (train, validation). ``size`` is a fraction of the images
    (0 < size < 1) or a count; with ``stratify`` each class gives its share (largest remainders
    round). Both parts keep the original order of their images."""
    _check_seed(seed)
    n = len(dataset)
    if isinstance(size, float):
        if not 0 < size < 1:
            raise DataError(f"the validation fraction must be between 0 and 1, got {size}")
        count = max(1, round(size * n))
    else:
        count = int(size)
    if not 0 < count < n:
        raise DataError(f"cannot hold out {count:,} of {n:,} images for validation (expected 1 to {n - 1:,})")
    rng = np.random.default_rng([seed, _SPLIT_TAG])
    held = np.zeros(n, dtype=bool)
    if stratify:
        members = [np.flatnonzero(dataset.labels == c) for c in range(len(dataset.classes))]
        shares = np.array([len(m) for m in members]) * count / n
        takes = np.floor(shares).astype(int)
        takes[np.argsort(takes - shares, kind="stable")[:count - takes.sum()]] += 1
        for indices, take in zip(members, takes):
            held[rng.permutation(indices)[:take]] = True
    else:
        held[rng.permutation(n)[:count]] = True
    base = dataset.name.removesuffix(" (train)")
    return (dataset.subset(np.flatnonzero(~held), f"{base} (train part)"),
            dataset.subset(np.flatnonzero(held), f"{base} (validation)"))
