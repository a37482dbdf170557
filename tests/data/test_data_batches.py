"""Batches: reproducible from (seed, epoch, batch), resumable, and the validation split."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.data import Augment, Batches, DataError, Dataset, Normalizer, split_validation


def _dataset(n=23, shape=(1, 4, 4)):
    rng = np.random.default_rng(0)
    return Dataset(rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n) % 3, ["a", "b", "c"], "toy")


def _epoch(**options):
    return [(x.copy(), y.copy()) for x, y in Batches(_dataset(), 5, **options)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def test_sizes_and_types():
    data = _dataset()
    batches = Batches(data, 5, shuffle=False)
    epoch = list(batches)
    assert len(batches) == 5 and [len(y) for _, y in epoch] == [5, 5, 5, 5, 3]
    assert len(Batches(data, 5, drop_last=True)) == 4 and len(list(Batches(data, 5, drop_last=True))) == 4
    x, y = epoch[0]
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (5, 1, 4, 4)
    # No shuffle, no normaliser: the images in order, scaled to [0, 1].
    np.testing.assert_allclose(x, data.images[:5] / 255, rtol=1e-6)
    assert list(np.concatenate([y for _, y in epoch])) == list(data.labels)


def test_shuffled_epoch_is_the_seeded_permutation():
    data = _dataset()
    order = np.random.default_rng([7, 2]).permutation(len(data))
    labels = np.concatenate([y for _, y in Batches(data, 5, seed=7, epoch=2)])
    np.testing.assert_array_equal(labels, data.labels[order])
    x = next(iter(Batches(data, 5, seed=7, epoch=2, dtype=np.float64)))[0]
    np.testing.assert_array_equal(x, data.images[order[:5]] / 255)


@pytest.mark.parametrize("augment", [None, Augment(crop_padding=2, flip=True)])
def test_same_seed_and_epoch_same_batches_other_epochs_differ(augment):
    first = _epoch(seed=3, epoch=1, augment=augment)
    assert _same(first, _epoch(seed=3, epoch=1, augment=augment))
    assert not _same(first, _epoch(seed=3, epoch=2, augment=augment))
    assert not _same(first, _epoch(seed=4, epoch=1, augment=augment))


def test_start_batch_equals_skipping():
    augment = Augment(crop_padding=1, flip=True)
    full = _epoch(seed=11, epoch=4, augment=augment)
    for k in (0, 2, 5):
        assert _same(_epoch(seed=11, epoch=4, augment=augment, start_batch=k), full[k:])
    with pytest.raises(DataError, match="start batch 6 is outside the epoch's 5 batches"):
        Batches(_dataset(), 5, start_batch=6)


def test_augmentation_changes_images_but_not_labels():
    plain = _epoch(seed=1, epoch=0)
    augmented = _epoch(seed=1, epoch=0, augment=Augment(crop_padding=2, flip=True))
    assert all(np.array_equal(y1, y2) for (_, y1), (_, y2) in zip(plain, augmented))
    assert not all(np.array_equal(x1, x2) for (x1, _), (x2, _) in zip(plain, augmented))


def test_normalizer_is_applied():
    data = _dataset()
    norm = Normalizer.from_images(data.images)
    x = np.concatenate([x for x, _ in Batches(data, 5, shuffle=False, normalizer=norm, dtype=np.float64)])
    np.testing.assert_allclose(x, (data.images / 255 - norm.mean[0]) / norm.std[0], rtol=1e-12, atol=1e-12)
    assert abs(x.mean()) < 1e-12


def test_bad_arguments():
    with pytest.raises(DataError, match="batch size must be at least 1"):
        Batches(_dataset(), 0)
    with pytest.raises(DataError, match="seed must be a non-negative integer"):
        Batches(_dataset(), 2, seed=-1)


def test_split_validation_is_seeded_and_disjoint():
    data = _dataset(n=30)
    train, val = split_validation(data, 0.2, seed=5)
    assert (len(train), len(val)) == (24, 6) and val.name == "toy (validation)"
    again_train, again_val = split_validation(data, 6, seed=5)
    np.testing.assert_array_equal(val.images, again_val.images)
    other = split_validation(data, 6, seed=6)[1]
    assert not np.array_equal(val.images, other.images)
    # Disjoint and complete: every image lands in exactly one part.
    rows = lambda d: {bytes(im) for im in d.images}  # noqa: E731
    assert rows(train) | rows(val) == rows(data) and not rows(train) & rows(val)
    with pytest.raises(DataError, match="cannot hold out 30 of 30 images"):
        split_validation(data, 30)
    with pytest.raises(DataError, match="fraction must be between 0 and 1"):
        split_validation(data, 1.5)


def test_stratified_split_keeps_class_shares():
    labels = np.array([0] * 20 + [1] * 10 + [2] * 10)
    data = Dataset(np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1), labels, ["a", "b", "c"], "toy")
    train, val = split_validation(data, 0.25, seed=0, stratify=True)
    assert list(np.bincount(val.labels)) == [5, 3, 2] or list(np.bincount(val.labels)) == [5, 2, 3]
    assert len(val) == 10 and list(np.bincount(train.labels, minlength=3) + np.bincount(val.labels)) == [20, 10, 10]
