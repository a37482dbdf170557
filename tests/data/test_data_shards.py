"""Shards of a batch for data-parallel training: together they are the batch, augmentation included."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.data import Augment, Batches, Dataset
from cnnlang.data.batches import shard_slice


@pytest.mark.parametrize("count, ranks", [(16, 2), (7, 3), (5, 5), (9, 4)])
def test_shard_slices_cover_the_batch_once_and_differ_by_at_most_one(count, ranks):
    parts = [shard_slice(count, r, ranks) for r in range(ranks)]
    assert np.concatenate([np.arange(count)[p] for p in parts]).tolist() == list(range(count))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("augment", [Augment(), Augment(crop_padding=2, flip=True)], ids=["plain", "augmented"])
def test_shards_together_are_the_single_process_batches(augment):
    rng = np.random.default_rng(0)
    dataset = Dataset(rng.integers(0, 256, (37, 1, 8, 8), dtype=np.uint8), rng.integers(0, 3, 37), ["a", "b", "c"], "toy")
    whole = Batches(dataset, 12, seed=5, epoch=2, augment=augment)
    shards = [Batches(dataset, 12, seed=5, epoch=2, augment=augment, shard=(r, 3)) for r in range(3)]
    assert all(len(s) == len(whole) for s in shards)
    for (x, y), *parts in zip(whole, *shards):
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
