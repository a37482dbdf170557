"""fit_to_input, the normaliser and the augmentations, against hand-made arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlang.data import DataError, Normalizer, fit_to_input, random_crop, random_flip


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(1, 256, shape, dtype=np.uint8)


def test_mnist_padded_to_lenet_input_two_pixels_each_side():
    images = _images((3, 1, 28, 28))
    out = fit_to_input(images, (1, 32, 32))
    assert out.shape == (3, 1, 32, 32) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 2:30, 2:30], images)
    assert out[:, :, :2].sum() == 0 and out[:, :, 30:].sum() == 0
    assert out[:, :, :, :2].sum() == 0 and out[:, :, :, 30:].sum() == 0


def test_odd_padding_puts_the_extra_pixel_bottom_right():
    out = fit_to_input(np.full((1, 1, 2, 3), 9, np.uint8), (1, 5, 4))
    expected = np.zeros((5, 4), np.uint8)
    expected[1:3, 0:3] = 9
    np.testing.assert_array_equal(out[0, 0], expected)


def test_grey_to_three_channels_and_equal_shape_unchanged():
    images = _images((2, 1, 4, 4))
    out = fit_to_input(images, (3, 6, 6))
    assert out.shape == (2, 3, 6, 6)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, channel, 1:5, 1:5], images[:, 0])
    assert fit_to_input(images, (1, 4, 4)) is images


def test_colour_into_grey_network_is_an_error():
    with pytest.raises(DataError, match=r"the images are 3x32x32 \(colour\) but the network expects 1x32x32.*"
                                        r"--input 3x32x32"):
        fit_to_input(_images((1, 3, 32, 32)), (1, 32, 32))


def test_larger_images_are_an_error():
    with pytest.raises(DataError, match=r"images are 1x28x28 but the network expects 1x24x24.*--input 1x28x28"):
        fit_to_input(_images((1, 1, 28, 28)), (1, 24, 24))


def test_normalizer_statistics_against_numpy():
    images = _images((5, 3, 6, 7))
    norm = Normalizer.from_images(images)
    scaled = images.astype(np.float64) / 255
    np.testing.assert_allclose(norm.mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    out = norm(images, np.float64)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, (scaled - scaled.mean(axis=(0, 2, 3), keepdims=True))
                               / scaled.std(axis=(0, 2, 3), keepdims=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    out32 = norm(images)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out, rtol=1e-5, atol=1e-5)


def test_normalizer_hand_computed_and_constant_channel():
    images = np.array([0, 255, 0, 255], np.uint8).reshape(4, 1, 1, 1)
    norm = Normalizer.from_images(images)
    assert norm.mean == [0.5] and norm.std == [0.5]
    np.testing.assert_array_equal(norm(images, np.float64).ravel(), [-1, 1, -1, 1])
    assert Normalizer.from_images(np.full((2, 1, 2, 2), 7, np.uint8)).std == [1.0]


def test_normalizer_state_round_trips_through_json():
    norm = Normalizer([0.1307, 0.2], [0.3081, 0.5])
    again = Normalizer.from_state(json.loads(json.dumps(norm.state())))
    assert again.mean == norm.mean and again.std == norm.std
    with pytest.raises(DataError, match="expected a mapping with 'mean' and 'std'"):
        Normalizer.from_state({"mean": [0.1]})
    with pytest.raises(DataError, match="one mean and one std per channel"):
        Normalizer.from_state({"mean": [0.1, 0.2], "std": [0.3]})
    with pytest.raises(DataError, match="positive stds"):
        Normalizer([0.1], [0.0])


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    batch = _images((20, 2, 5, 6))
    out = random_crop(batch, 2, np.random.default_rng(3))
    offsets = np.random.default_rng(3).integers(0, 5, size=(20, 2))
    padded = np.pad(batch, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, :, dy:dy + 5, dx:dx + 6])
    assert out.shape == batch.shape and len({tuple(o) for o in offsets}) > 1


def test_random_flip_mirrors_about_half():
    batch = _images((200, 1, 3, 4))
    out = random_flip(batch, np.random.default_rng(5))
    flipped = [np.array_equal(o, b[:, :, ::-1]) for o, b in zip(out, batch)]
    kept = [np.array_equal(o, b) for o, b in zip(out, batch)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130
    np.testing.assert_array_equal(np.array(flipped), np.random.default_rng(5).random(200) < 0.5)


def test_padding_to_more_than_four_times_the_area_is_an_error():
    with pytest.raises(DataError, match=r"images are 8x8 but the network expects 32x32: padding would make them "
                                        r"mostly zeros; .* --input 1x8x8"):
        fit_to_input(_images((1, 1, 8, 8)), (1, 32, 32))
    assert fit_to_input(_images((1, 1, 16, 16)), (1, 32, 32)).shape == (1, 1, 32, 32)  # exactly 4x: padded
