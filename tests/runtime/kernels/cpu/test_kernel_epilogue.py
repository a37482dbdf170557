"""Fused epilogues (runtime/kernels/cpu/epilogue.py) and the conv kernel's fused, strided-output
forward, against plain NumPy references in float32 and float64.

Tolerances: the epilogue does the same float operations as the reference (one add, one
activation), so float32 agrees to a few ulp (rtol 1e-6, as the activation tests) and float64
to 1e-14. The conv reference sums in float64, so float32 conv output is compared at the
float32 accuracy of a K-term dot product (1e-5 of the output scale)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_forward
from cnnlang.runtime.kernels.cpu.epilogue import (
    NONE, RELU, SIGMOID, SMOOTH_BLOCK, TANH, activation_kind, add_activation, bias_activation,
    bias_residual_activation,
)

DTYPES = [np.float32, np.float64]
ACTIVATIONS = {
    NONE: lambda v: v,
    RELU: lambda v: np.maximum(v, 0),
    TANH: np.tanh,
    SIGMOID: lambda v: 1 / (1 + np.exp(-v)),
}


def tolerance(dtype) -> float:
    return 1e-6 if dtype == np.float32 else 1e-14


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("strided", [False, True])
def test_bias_activation_matches_numpy(dtype, kind, with_bias, strided):
    rng = np.random.default_rng(kind + 7)
    wide = rng.standard_normal((37, 11)).astype(dtype)
    keep = wide.copy()
    y = wide[:, 3:8] if strided else wide  # a channel slice, like a producer writing into a concat
    bias = rng.standard_normal(y.shape[1]).astype(dtype) if with_bias else None
    expected = ACTIVATIONS[kind](y.astype(np.float64) + (0 if bias is None else bias))
    bias_activation(y, bias, kind)
    tol = tolerance(dtype)
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    if strided:  # the channels around the slice are untouched
        np.testing.assert_array_equal(wide[:, :3], keep[:, :3])
        np.testing.assert_array_equal(wide[:, 8:], keep[:, 8:])


def test_relu_epilogue_keeps_nan_and_zeroes_negatives():
    y = np.array([[-1.0, np.nan, 2.0]], np.float32)
    bias_activation(y, np.array([0.5, 0.0, -3.0], np.float32), RELU)
    np.testing.assert_array_equal(y, [[0.0, np.nan, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("kind", [RELU, NONE, TANH])
def test_add_activation_matches_numpy(dtype, count, kind):
    rng = np.random.default_rng(count)
    inputs = [rng.standard_normal((2, 5, 5, 4)).astype(dtype) for _ in range(count)]
    expected = ACTIVATIONS[kind](sum(x.astype(np.float64) for x in inputs))
    out = np.empty_like(inputs[0])
    add_activation(inputs, out, kind)
    np.testing.assert_allclose(out, expected, rtol=tolerance(dtype), atol=tolerance(dtype))
    # in place over its first input, as the memory planner may arrange
    add_activation(inputs, inputs[0], kind)
    np.testing.assert_allclose(inputs[0], expected, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_add_relu_into_a_strided_slice():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((2, 3, 3, 4))
    wide = np.zeros((2, 3, 3, 9))
    add_activation([a, b], wide[..., 2:6], RELU)
    np.testing.assert_allclose(wide[..., 2:6], np.maximum(a + b, 0), rtol=1e-14)
    assert not wide[..., :2].any() and not wide[..., 6:].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(ACTIVATIONS))
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("strided", [False, True])
def test_bias_residual_activation_matches_the_unfused_bias_then_add(dtype, kind, with_bias, strided):
    rng = np.random.default_rng(kind + 11)
    wide = rng.standard_normal((23, 12)).astype(dtype)
    keep = wide.copy()
    y = wide[:, 2:9] if strided else wide  # a conv writing into its concat slice
    shortcut = rng.standard_normal(y.shape).astype(dtype)
    bias = rng.standard_normal(y.shape[1]).astype(dtype) if with_bias else None
    unfused = y.copy()
    bias_activation(unfused, bias, NONE)
    add_activation([unfused, shortcut], unfused, kind)
    bias_residual_activation(y, bias, shortcut, kind)
    if kind in (NONE, RELU):  # the same operations in the same order: the same bits
        np.testing.assert_array_equal(y, unfused)
    np.testing.assert_allclose(y, unfused, rtol=tolerance(dtype), atol=tolerance(dtype))
    if strided:
        np.testing.assert_array_equal(wide[:, :2], keep[:, :2])
        np.testing.assert_array_equal(wide[:, 9:], keep[:, 9:])


def test_activation_kind_names():
    assert activation_kind(None) == NONE
    assert [activation_kind(n) for n in ("relu", "tanh", "sigmoid")] == [RELU, TANH, SIGMOID]


def reference_conv(x, w, b, stride, pad, groups):
    """NHWC cross-correlation from the definition, in float64: pad, then per tap and group."""
    n, h, wd, c = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, ho, wo, o))
    og = o // groups
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride, :]
            for g in range(groups):
                out[..., g * og : (g + 1) * og] += np.einsum(
                    "nhwc,oc->nhwo", patch[..., g * cg : (g + 1) * cg], w[g * og : (g + 1) * og, :, i, j]
                )
    return out + b


CASES = {  # (C, O, kernel, stride, pad, groups)
    "pointwise": (6, 5, 1, 1, 0, 1),
    "pointwise-grouped": (6, 4, 1, 1, 0, 2),
    "3x3": (3, 5, 3, 1, 1, 1),
    "strided-grouped": (4, 6, 3, 2, 1, 2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", [RELU, SIGMOID])
@pytest.mark.parametrize("strided", [False, True])
def test_conv_forward_with_fused_epilogue_and_strided_output(dtype, case, kind, strided):
    c, o, k, stride, pad, groups = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.standard_normal((2, 9, 9, c)).astype(dtype)
    w = rng.standard_normal((o, c // groups, k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    expected = ACTIVATIONS[kind](reference_conv(x, w, b, stride, pad, groups))
    shape = (*expected.shape[:3], o)
    wide = np.full((*shape[:3], o + 7), -5.0, dtype)
    out = wide[..., 4 : 4 + o] if strided else np.empty(shape, dtype)
    # A tiny column budget forces several chunks, so the per-chunk epilogue is exercised.
    workspace = ConvWorkspace(budget=1, min_pixels=16)
    conv2d_forward(x, w, b, (stride, stride), ((pad, pad), (pad, pad)), (1, 1), groups, out, workspace, kind)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol * np.abs(expected).max())
    if strided:
        assert np.all(wide[..., :4] == -5) and np.all(wide[..., 4 + o :] == -5)


def test_conv_refuses_an_output_that_is_not_a_channel_slice():
    x = np.zeros((1, 4, 4, 2), np.float32)
    w = np.zeros((3, 2, 1, 1), np.float32)
    out = np.zeros((1, 8, 4, 3), np.float32)[:, ::2]  # every other row: not one GEMM operand
    with pytest.raises(ValueError, match="channel slice"):
        conv2d_forward(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, out)


@pytest.mark.parametrize("kind", [TANH, SIGMOID])
@pytest.mark.parametrize("channels", [6, 7, 5000])
def test_float32_tanh_sigmoid_epilogue_over_many_blocks(kind, channels):
    # More than one task of SMOOTH_BLOCK elements (the bias is tiled per block, whole rows
    # each; 7 does not divide the block, 5000 channels exceed it)
    rng = np.random.default_rng(channels)
    y = (rng.standard_normal((3 * SMOOTH_BLOCK // channels + 5, channels)) * 3).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    expected = ACTIVATIONS[kind]((y + bias).astype(np.float64))  # the float32 sum, as the kernel
    bias_activation(y, bias, kind)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
