"""Activation and softmax kernels (runtime/kernels/cpu/activation.py) against NumPy formulas, and
their backward passes by float64 central differences (one kernel call for all perturbations:
element-wise and row-wise kernels treat the stacked copies independently)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.activation import (
    KINDS,
    activation_backward,
    activation_forward,
    softmax_backward,
    softmax_forward,
)
from gradcheck import stacked_central_difference

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REFERENCE = {
    "relu": lambda x: np.where(x > 0, x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 0.5 * (1 + np.tanh(x / 2)),  # the same function, computed another way
}


def activate(name: str, x: np.ndarray) -> np.ndarray:
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    activation_forward(flat, out, KINDS[name])
    return out.reshape(x.shape)


def activate_backward(name: str, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    dx = np.empty(y.size, y.dtype)
    activation_backward(y.reshape(-1), np.ascontiguousarray(dy).reshape(-1), dx, KINDS[name])
    return dx.reshape(y.shape)


def softmax(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    softmax_forward(np.ascontiguousarray(x), out)
    return out


shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


@SETTINGS
@given(st.sampled_from(sorted(KINDS)), shapes, st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_elementwise_forward_matches_numpy(name, shape, dtype, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(activate(name, x), REFERENCE[name](x.astype(np.float64)), rtol=tol, atol=tol)


@SETTINGS
@given(st.sampled_from(sorted(KINDS)), shapes, st.integers(0, 99))
def test_elementwise_backward_finite_differences(name, shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-3] = 0.5  # relu has no derivative at 0
    weights = rng.standard_normal(shape)
    dx = activate_backward(name, activate(name, x), weights)
    numeric = stacked_central_difference(lambda stack: (activate(name, stack) * weights).reshape(len(stack), -1).sum(axis=1), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_edge_values(dtype):
    x = np.array([-1000.0, -0.0, 0.0, 1000.0, np.nan, np.inf, -np.inf], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp(1000) overflows to inf on the way: no warning
        relu, tanh, sigmoid = (activate(name, x) for name in ("relu", "tanh", "sigmoid"))
    np.testing.assert_array_equal(relu, [0, 0, 0, 1000, np.nan, np.inf, 0])
    np.testing.assert_array_equal(tanh, [-1, -0.0, 0, 1, np.nan, 1, -1])
    np.testing.assert_array_equal(sigmoid, [0, 0.5, 0.5, 1, np.nan, 1, 0])
    # relu's derivative is 0 at 0 (as PyTorch): the output 0 lets no gradient through.
    np.testing.assert_array_equal(activate_backward("relu", relu, np.ones_like(x)), [0, 0, 0, 1, 0, 1, 0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_relatively_accurate_for_tiny_outputs(dtype):
    # 1 / (1 + exp(-x)), as PyTorch: 0.5 + 0.5 tanh(x / 2) would round these to 0 or ~1e-8.
    x = np.array([-15.0, -30.0, -80.0], dtype)
    expected = np.exp(x.astype(np.float64)) / (1 + np.exp(x.astype(np.float64)))
    np.testing.assert_allclose(activate("sigmoid", x), expected, rtol=1e-5)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 7), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_softmax_forward_matches_numpy(rows, channels, dtype, seed):
    x = (np.random.default_rng(seed).standard_normal((rows, channels)) * 5).astype(dtype)
    e = np.exp(x.astype(np.float64))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(softmax(x), e / e.sum(axis=1, keepdims=True), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_is_stable_for_large_inputs(dtype):
    x = np.array([[1000.0, 1000.0, 990.0], [-1000.0, -1000.0, -1000.0]], dtype)
    out = softmax(x)
    third = 1 / (2 + np.exp(-10.0))
    np.testing.assert_allclose(out, [[third, third, np.exp(-10.0) * third], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-5)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 6), st.integers(0, 99))
def test_softmax_backward_finite_differences(rows, channels, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, channels)) * 2
    weights = rng.standard_normal((rows, channels))
    y = softmax(x)
    dx = np.empty_like(x)
    softmax_backward(y, weights, dx)

    def losses(stack):
        out = softmax(stack.reshape(-1, channels)).reshape(stack.shape)
        return (out * weights).sum(axis=(1, 2))

    np.testing.assert_allclose(dx, stacked_central_difference(losses, x), rtol=1e-6, atol=1e-8)


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 spacing at want (want in float64)."""
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - want) / spacing


def dense_float32(top: float, step: int = 331) -> np.ndarray:
    """Every step-th float32 from 0 to ``top`` (by bit pattern: as dense near 0 as near top,
    denormals included), and their negatives."""
    bits = np.arange(0, np.float32(top).view(np.uint32), step, dtype=np.uint32)
    x = bits.view(np.float32)
    return np.concatenate([x, -x])


def test_float32_tanh_is_within_2_ulp_over_a_dense_range():
    # The float32 kernel has its own formula (two pieces meeting at |x| = 0.625, a clamp at 9.5)
    x = np.concatenate([dense_float32(12.0), np.float32([0.625, -0.625, 9.5, 0.0004])])
    x = np.concatenate([x, np.nextafter(x, np.float32(np.inf)), np.nextafter(x, np.float32(-np.inf))])
    error = ulps(activate("tanh", x), np.tanh(x.astype(np.float64)))
    assert error.max() <= 2.0, f"tanh({x[np.argmax(error)]!r}) is {error.max():.2f} ulp off"


def test_float32_sigmoid_is_within_3_ulp_down_to_denormal_outputs():
    x = dense_float32(110.0)
    x64 = x.astype(np.float64)
    # exp(x) / (1 + exp(x)) below 0 in float64: exact to float32 precision, also where the
    # float32 result is a denormal (compared in units of the denormal spacing there)
    want = np.where(x64 >= 0, 1 / (1 + np.exp(-np.abs(x64))), np.exp(-np.abs(x64)) / (1 + np.exp(-np.abs(x64))))
    got = activate("sigmoid", x)
    error = ulps(got, want)
    assert error.max() <= 3.0, f"sigmoid({x[np.argmax(error)]!r}) is {error.max():.2f} ulp off"
    assert got[x < -90].min() == 0 and got[(x < -87.5) & (x > -100)].min() > 0  # denormals, not 0


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_float32_kernels_keep_nan_signed_zeros_and_denormal_inputs(name):
    tiny = np.float32([1e-45, -1e-45, 1e-39, -3e-38, 0.0, -0.0, np.nan])
    got = activate(name, tiny)
    if name == "tanh":  # tanh(x) = x to float32 precision here, sign of zero included
        np.testing.assert_array_equal(got, tiny)
        assert np.signbit(got[5]) and not np.signbit(got[4])
    else:
        np.testing.assert_array_equal(got, [0.5] * 6 + [np.nan])


def test_float32_kernels_agree_with_numpy_on_strided_views():
    # Non-contiguous arrays take NumPy's ufuncs; contiguous ones the kernels: the same values
    x = (np.random.default_rng(3).standard_normal((6, 8)) * 3).astype(np.float32)
    for name in ("tanh", "sigmoid"):
        strided = np.empty((6, 8), np.float32)[:, ::2]
        activation_forward(x[:, ::2], strided, KINDS[name])
        contiguous = activate(name, np.ascontiguousarray(x[:, ::2]))
        np.testing.assert_allclose(strided, contiguous, rtol=3e-7, atol=0)
