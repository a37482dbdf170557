"""Whole networks: gradients by finite differences (float64), fan-out accumulation, modes, the API."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.runtime.network import InputError

SMALL_RESIDUAL = """
from "resnet_blocks.cnn" import basic
network small_residual {
    input 3x8x8
    conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    basic(4)
    basic(6, stride = 2)
    globalavgpool
    fc(5)
}
"""

SMALL_INCEPTION = """
network small_inception {
    input 2x7x7
    conv(4, 3x3, pad = 1) -> relu
    concat {
        branch { conv(3, 1x1) -> relu }
        branch { conv(2, 1x1) -> relu -> conv(3, 3x3, pad = 1) -> relu }
        branch { maxpool(3x3, stride = 1, pad = 1) -> conv(2, 1x1) -> sigmoid }
    }
    avgpool(2x2, stride = 2, ceil = true)
    lrn(size = 3)
    flatten
    fc(6) -> tanh -> dropout(0.3)
    fc(4)
}
"""


def loss_and_grad(net, x, weights, seed=7):
    """L = sum(y * weights); the dropout mask is re-seeded so every evaluation sees the same one."""
    net.context.rng = np.random.default_rng(seed)
    y = net.forward(x)
    return float(np.sum(y * weights)), weights


def check_network_gradients(net, x, rng, coordinates=6, eps=1e-6, rtol=1e-5):
    weights = rng.standard_normal((x.shape[0], *net.model.output_shape))
    _, dy = loss_and_grad(net, x, weights)
    dx = net.backward(dy)
    analytic = {name: net.grads[name].copy() for name in net.trainable}

    def loss():
        return loss_and_grad(net, x, weights)[0]

    # A directional derivative through every parameter and the input at once ...
    directions = {name: rng.standard_normal(net.params[name].shape) for name in net.trainable}
    vx = rng.standard_normal(x.shape)
    saved = {name: net.params[name].copy() for name in net.trainable}

    def shifted(step):
        for name in net.trainable:
            net.params[name][...] = saved[name] + step * directions[name]
        value = loss_and_grad(net, x + step * vx, weights)[0]
        for name in net.trainable:
            net.params[name][...] = saved[name]
        return value

    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    predicted = sum(float(np.sum(analytic[n] * directions[n])) for n in net.trainable) + float(np.sum(dx * vx))
    assert numeric == pytest.approx(predicted, rel=rtol, abs=1e-8)

    # ... and single coordinates of every parameter tensor, so no tensor hides behind the others.
    for name in net.trainable:
        array = net.params[name]
        for flat in rng.choice(array.size, size=min(coordinates, array.size), replace=False):
            index = np.unravel_index(flat, array.shape)
            original = array[index]
            array[index] = original + eps
            up = loss()
            array[index] = original - eps
            down = loss()
            array[index] = original
            assert (up - down) / (2 * eps) == pytest.approx(analytic[name][index], rel=1e-4, abs=1e-7), name


@pytest.mark.parametrize("source, batch", [("lenet5", 2), (SMALL_RESIDUAL, 3), (SMALL_INCEPTION, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_whole_network_gradients_match_finite_differences(source, batch, training):
    rng = np.random.default_rng(0)
    net = cnnlang.load(source).build(seed=1, dtype="float64", input_grad=True).train(training)
    for name in net.buffers:  # non-trivial running statistics, so eval mode is not the identity
        net.buffers[name][...] = rng.uniform(0.5, 1.5, net.buffers[name].shape)
    for name in net.params:
        # Random biases: with zero biases a pixel whose inputs are all ReLU zeros sits exactly on
        # the next ReLU's kink, where finite differences see half a slope.
        if name.endswith((".bias", ".beta")):
            net.params[name][...] = rng.uniform(-0.5, 0.5, net.params[name].shape)
    x = rng.standard_normal((batch, *net.input_shape))
    check_network_gradients(net, x, rng)


def test_fan_out_gradients_accumulate():
    # y = relu(x) used by both add inputs: dL/dx must be twice what one path gives.
    source = "network twice { input 2x3x3\n a: relu\n from a, a -> add\n }"
    net = cnnlang.load(source).build(dtype="float64", input_grad=True)
    x = np.abs(np.random.default_rng(0).standard_normal((1, 2, 3, 3))) + 0.1
    net.forward(x)
    dx = net.backward(np.ones((1, 2, 3, 3)))
    np.testing.assert_array_equal(dx, np.full((1, 2, 3, 3), 2.0))


def test_float32_matches_float64():
    model = cnnlang.load(SMALL_INCEPTION)
    x = np.random.default_rng(3).standard_normal((4, *model.input_shape))
    y64 = model.build(seed=5, dtype="float64").forward(x)
    y32 = model.build(seed=5, dtype="float32").forward(x)
    # float32 keeps ~7 digits; a few dozen accumulations stay well inside 1e-4 relative.
    np.testing.assert_allclose(y32, y64, rtol=1e-4, atol=1e-5)


def test_same_seed_same_network_other_seed_other_weights():
    model = cnnlang.load("lenet5")
    a, b, c = model.build(seed=3), model.build(seed=3), model.build(seed=4)
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    assert not np.array_equal(a.params["c1.weight"], c.params["c1.weight"])


def test_batchnorm_modes_and_running_statistics():
    net = cnnlang.load("network bn { input 3x4x4\n batchnorm(momentum = 0.5) }").build(dtype="float64")
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4)) * 2 + 3
    y = net.train().forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    mean = x.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(net.buffers["batchnorm1.running_mean"], 0.5 * mean)
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(net.buffers["batchnorm1.running_var"], 0.5 + 0.5 * var)
    y_eval = net.eval().forward(x)
    expected = (x - 0.5 * mean[None, :, None, None]) / np.sqrt(0.5 + 0.5 * var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y_eval, expected, rtol=1e-12)


def test_dropout_is_seeded_and_off_in_eval():
    model = cnnlang.load("network d { input 1000\n dropout(0.25) }")
    x = np.ones((2, 1000))
    a, b = model.build(seed=9).train(), model.build(seed=9).train()
    ya, yb = a.forward(x), b.forward(x)
    np.testing.assert_array_equal(ya, yb)
    kept = ya != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(ya[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(a.eval().forward(x), x)


def test_multiple_outputs_and_gradients_by_name():
    source = "network two { input 4\n h: fc(3)\n a: fc(2)\n from h -> b: fc(5)\n output a, b }"
    net = cnnlang.load(source).build(dtype="float64", input_grad=True)
    x = np.random.default_rng(0).standard_normal((2, 4))
    net.forward(x)
    outs = net.outputs()
    assert outs["a"].shape == (2, 2) and outs["b"].shape == (2, 5)
    dx_a = net.backward({"a": np.ones((2, 2))})
    dx_both = net.backward({"a": np.ones((2, 2)), "b": np.ones((2, 5))})
    dx_b = net.backward({"b": np.ones((2, 5))})
    np.testing.assert_allclose(dx_both, dx_a + dx_b)
    assert not np.any(net.grads["a.weight"])  # no gradient asked of 'a': its parameters get zero


def test_wrong_input_shape_names_what_was_expected():
    net = cnnlang.load("lenet5").build()
    with pytest.raises(InputError, match=r"expected input N x 1x32x32 .* got 2x3x32x32"):
        net.forward(np.zeros((2, 3, 32, 32)))
    with pytest.raises(InputError, match="expected numbers"):
        net.forward(np.array(["a"]))
    net.forward(np.zeros((1, 32, 32)))  # one example without the batch axis is accepted
    with pytest.raises(InputError, match=r"gradient for 'out' must be 1x10, got 2x10"):
        net.backward(np.zeros((2, 10)))


def test_parameters_are_addressable_by_layer_name():
    net = cnnlang.load("resnet18", input_shape=(3, 32, 32)).build()
    assert net.params["conv1.weight"].shape == (64, 3, 7, 7)
    assert net.params["basic3/shortcut_conv1.weight"].shape == (128, 64, 1, 1)
    assert net.buffers["basic1/batchnorm1.running_var"].shape == (64,)
    assert set(net.grads) == set(net.params)
    net.set_param("fc1.bias", np.arange(1000))
    assert net.params["fc1.bias"][7] == 7
    with pytest.raises(ValueError, match="fc1.bias is 1000, got 3"):
        net.set_param("fc1.bias", np.zeros(3))
    with pytest.raises(KeyError, match="no parameter"):
        net.set_param("fc9.bias", np.zeros(3))


@pytest.mark.parametrize("passes", [None, "all"])
@pytest.mark.parametrize("source", [
    "network flat { input 4\n fc(3) }",                          # N x F output
    "network maps { input 2x6x6\n conv(1, 3x3, pad = 1) }",     # one channel: channels-last is already channels-first
    "network many { input 2x6x6\n conv(3, 3x3, pad = 1) }",
])
def test_forward_returns_arrays_the_caller_owns(source, passes):
    net = cnnlang.load(source).build(passes=passes).eval()
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal((2, *net.input_shape)) for _ in range(2))
    first = net.forward(x1)
    kept = first.copy()
    second = net.forward(x2)
    np.testing.assert_array_equal(first, kept)  # the second call left the first result alone
    assert not np.shares_memory(first, second)
    outputs = net.outputs()
    net.forward(x1)
    np.testing.assert_array_equal(outputs[net.output_names[0]], second)


def test_forward_writes_into_out_when_asked():
    net = cnnlang.load("network maps { input 2x6x6\n conv(3, 3x3, pad = 1) }").build(dtype="float64")
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6))
    out = np.empty((2, 3, 6, 6))
    assert net.forward(x, out=out) is out
    np.testing.assert_array_equal(out, net.forward(x))
    with pytest.raises(InputError, match=r"out must be a float64 array of 2x3x6x6, got float64 2x3x6x5"):
        net.forward(x, out=np.empty((2, 3, 6, 5)))


def test_batchnorm_momentum_one_keeps_the_last_batch_statistics():
    net = cnnlang.load("network b { input 3x4x4\n batchnorm(momentum = 1) }").build(dtype="float64").train()
    x = np.random.default_rng(0).standard_normal((5, 3, 4, 4))
    net.forward(x)
    np.testing.assert_allclose(net.buffers["batchnorm1.running_mean"], x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(net.buffers["batchnorm1.running_var"], x.var(axis=(0, 2, 3), ddof=1), rtol=1e-12)
