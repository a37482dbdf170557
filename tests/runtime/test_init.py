"""Initialisation: He before ReLU, Xavier before tanh/sigmoid/nothing, zeros and ones elsewhere,
and kernels written in the .cnn file used as written (the lecture's blur, sharpen and edge)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import cnnlang
from cnnlang.runtime.init import fans, nonlinearity_after


def test_initialisation_follows_the_nonlinearity():
    source = """network n {
        input 16x20x20
        a: conv(64, 3x3) -> batchnorm -> relu
        b: conv(64, 3x3) -> tanh
        flatten
        c: fc(500)
    }"""
    model = cnnlang.load(source)
    assert nonlinearity_after(model.graph, "a") == "relu"
    assert nonlinearity_after(model.graph, "b") == "tanh"
    assert nonlinearity_after(model.graph, "c") is None
    net = model.build(seed=0, dtype="float64")
    he = math.sqrt(2 / (16 * 9))
    assert np.std(net.params["a.weight"]) == pytest.approx(he, rel=0.03)
    assert abs(np.mean(net.params["a.weight"])) < he * 0.03
    fan_in, fan_out = fans(net.params["b.weight"].shape)
    bound = math.sqrt(6 / (fan_in + fan_out))
    w = net.params["b.weight"]
    assert w.max() <= bound and w.min() >= -bound and w.max() > 0.95 * bound
    assert np.std(w) == pytest.approx(bound / math.sqrt(3), rel=0.03)  # uniform's std
    assert not np.any(net.params["a.bias"]) and not np.any(net.params["c.bias"])
    np.testing.assert_array_equal(net.params["batchnorm1.gamma"], 1)
    np.testing.assert_array_equal(net.params["batchnorm1.beta"], 0)
    np.testing.assert_array_equal(net.buffers["batchnorm1.running_var"], 1)


def test_prelu_gets_he_for_its_initial_slope_and_starts_at_a_quarter():
    model = cnnlang.load("network n {\n input 16x20x20\n conv(64, 3x3) -> batchnorm -> prelu\n}")
    net = model.build(seed=0, dtype="float64")
    he_leaky = math.sqrt(2 / ((1 + 0.25**2) * 16 * 9))
    assert np.std(net.params["conv1.weight"]) == pytest.approx(he_leaky, rel=0.03)
    np.testing.assert_array_equal(net.params["prelu1.weight"], np.full(64, 0.25))


def test_residual_body_end_gets_he_through_the_add():
    model = cnnlang.load("resnet18", input_shape=(3, 32, 32))
    assert nonlinearity_after(model.graph, "basic1/conv2") == "relu"


def test_fans_count_the_receptive_field():
    assert fans((64, 32, 3, 3)) == (32 * 9, 64 * 9)
    assert fans((10, 84)) == (84, 10)


FILTERS = {
    "blur": [[1, 1, 1], [1, 1, 1], [1, 1, 1]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "edge": [[1, 1, 1], [1, -8, 1], [1, 1, 1]],
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_fixed_kernels_run_as_written_and_stay_frozen(name):
    kernel = np.array(FILTERS[name], dtype=np.float64)
    source = f"network {name} {{ input 1x6x7\n conv(1, 3x3, pad = 1, bias = false, weights = {FILTERS[name]}) }}"
    model = cnnlang.load(source)
    assert model.totals["trainable"] == 0
    net = model.build(seed=0, dtype="float64", input_grad=True)
    assert net.trainable == []
    image = np.random.default_rng(1).integers(0, 10, size=(1, 1, 6, 7)).astype(np.float64)
    padded = np.pad(image[0, 0], 1)
    expected = np.array([[np.sum(padded[i:i + 3, j:j + 3] * kernel) for j in range(7)] for i in range(6)])
    np.testing.assert_allclose(net.forward(image)[0, 0], expected)
    if name == "edge":  # an edge detector gives zero on a flat image, away from the border
        flat = net.forward(np.ones((1, 1, 6, 7)))[0, 0]
        np.testing.assert_allclose(flat[1:-1, 1:-1], 0)


def test_fixed_kernel_broadcasts_to_every_channel_pair():
    source = "network b { input 3x5x5\n conv(2, 3x3, weights = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]) }"
    net = cnnlang.load(source).build(dtype="float64")
    x = np.random.default_rng(0).standard_normal((1, 3, 5, 5))
    y = net.forward(x)
    np.testing.assert_allclose(y[0, 0], x[0].sum(axis=0)[1:-1, 1:-1])
    np.testing.assert_allclose(y[0, 1], y[0, 0])


def test_written_weights_of_the_wrong_size_are_a_located_error():
    with pytest.raises(cnnlang.CnnError, match=r"written weights are 2x2, but this layer's kernel is 3x3"):
        cnnlang.load("network w { input 1x5x5\n conv(1, 3x3, weights = [[1, 2], [3, 4]]) }")
    with pytest.raises(cnnlang.CnnError, match=r"same length"):
        cnnlang.load("network w { input 1x5x5\n conv(1, 3x3, weights = [[1, 2], [3]]) }")
