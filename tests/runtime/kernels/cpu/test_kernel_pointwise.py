"""The inference GEMM with bias + relu fused (runtime/kernels/cpu/pointwise.py) against NumPy.

The cases cover rows below, at and above one block of ROWS rows (6, or 12 with AVX-512: tail rows),
output channels below, at and above one panel (16 float32 columns, 8 float64; twice that with
AVX-512: partial panels, half-width last panels, whole and partial), K
below and not a multiple of the unrolled k step, an output that is a channel slice of a wider
array (a concat buffer),
relu or none, a missing bias, NaN passing through relu, and more threads' rows than rows; and
Winograd's 16 stacked GEMMs on the same tile (winograd_forward's ``panels``), and training's
in-place packing of them.
"""

from __future__ import annotations

import platform
import re

import numpy as np
import pytest
from numba import njit

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace
from cnnlang.runtime.kernels.cpu.epilogue import RELU
from cnnlang.runtime.kernels.cpu.pointwise import (
    ROWS, _tile_6x2_residual, pack_panels, padded_bias, panel_width, pointwise_forward, stacked_panels,
    stacked_panels_into, takes,
)
from cnnlang.runtime.kernels.cpu.winograd import transform_weight, winograd_forward


def run(x, w, b, relu, out, threads=2):
    scratch = np.full(threads * ROWS * panel_width(x.dtype), np.nan, x.dtype)
    pointwise_forward(x, pack_panels(w), padded_bias(b, w.shape[0], x.dtype), relu, out, scratch)


def reference(x, w, b, relu):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b
    return np.maximum(y, 0) if relu else y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (6, 4, 16), (13, 7, 9), (31, 33, 40), (12, 20, 24), (12, 5, 20),
                                     (7, 3, 4), (14, 5, 16), (25, 9, 48)])
@pytest.mark.parametrize("relu", [False, True])
def test_matches_numpy(dtype, m, k, n, relu):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    run(x, w, b, relu, out)
    # the same inputs in float64: what float32 rounding allows, exact to float64 rounding in float64
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, reference(x, w, b, relu), rtol=tolerance, atol=tolerance * np.sqrt(k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_writes_only_its_channel_slice(dtype):
    """Into columns 5..5+N of a wider buffer (a concat's slice), no bias; the rest untouched."""
    rng = np.random.default_rng(1)
    m, k, n = 19, 10, 21
    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    buffer = np.full((m, 40), 7.0, dtype)
    run(x, w, None, True, buffer[:, 5 : 5 + n])
    np.testing.assert_allclose(buffer[:, 5 : 5 + n], reference(x, w, None, True), rtol=1e-5, atol=1e-5)
    assert (buffer[:, :5] == 7).all() and (buffer[:, 5 + n :] == 7).all()


def test_relu_passes_nan_and_zeroes_negatives():
    x = np.array([[np.nan, 1.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]], np.float32)
    w = np.array([[1.0, 1.0], [2.0, 0.0]], np.float32)
    out = np.empty((4, 2), np.float32)
    run(x, w, None, True, out, threads=1)
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1:], [[1, 2], [0, 0], [0, 0]])


def test_the_rule():
    relu_1x1 = ((64, 192, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 1, "relu")
    assert takes(*relu_1x1)
    assert not takes((512, 192, 1, 1), *relu_1x1[1:])  # many outputs: BLAS
    assert not takes((64, 192, 3, 3), *relu_1x1[1:])
    assert not takes((64, 192, 1, 1), (2, 2), *relu_1x1[2:])
    assert not takes(*relu_1x1[:-1], "tanh")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cout", [5, 16, 24])
def test_winograd_gemms_on_the_tile(dtype, cout):
    """winograd_forward with ``panels`` (its 16 GEMMs here, stacked) against NumPy's direct
    convolution, in chunks of two tile rows that split images (several GEMM calls)."""
    rng = np.random.default_rng(cout)
    x = rng.standard_normal((3, 9, 7, 6)).astype(dtype)
    weight = rng.standard_normal((cout, 6, 3, 3)).astype(dtype)
    bias = rng.standard_normal(cout).astype(dtype)
    pads = ((1, 1), (1, 1))
    u = transform_weight(weight, dtype)
    per_row = 16 * 4 * (6 + cout) * np.dtype(dtype).itemsize
    out = np.full((3, 9, 7, cout), np.nan, dtype)
    winograd_forward(x, u, bias, pads, out, ConvWorkspace(budget=2 * per_row + 1), RELU, panels=stacked_panels(u))
    padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(np.einsum("nhwc,oc->nhwo", padded[:, i : i + 9, j : j + 7], weight[:, :, i, j].astype(np.float64))
                   for i in range(3) for j in range(3)) + bias
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, np.maximum(expected, 0), rtol=tolerance, atol=tolerance * np.abs(expected).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cout", [5, 16, 24, 32])
def test_stacked_panels_into_matches_stacked_panels(dtype, cout):
    """Training's packing into a reused buffer: the same panels as stacked_panels, whole panels or not."""
    u = np.random.default_rng(cout).standard_normal((16, 7, cout)).astype(dtype)
    buffer = np.full(u.size, np.nan, dtype)
    np.testing.assert_array_equal(stacked_panels_into(u, buffer), stacked_panels(u))


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="reads x86 assembly")
def test_tile_prefetches_the_lines_its_epilogue_touches():
    """The residual tile asks for each of its 6 rows' output lines (for writing) and shortcut lines
    before its k loop: two lines a row (first and last element), 24 prefetches in all. (Speed only:
    the results are the same without them; measured in docs/runtime.md.)"""

    width = panel_width(np.float32)  # the host's: 16 columns with AVX2, 32 with AVX-512

    @njit
    def one_tile(a, v, bias, r, y):
        _tile_6x2_residual(a, 0, 8, 0, 1, v, 0, 8, bias, 0, 1, r, 0, width, y, 0, width)

    a, v, bias = np.ones(6 * 8, np.float32), np.ones(8 * width, np.float32), np.zeros(width, np.float32)
    r, y = np.ones(6 * width, np.float32), np.empty(6 * width, np.float32)
    one_tile(a, v, bias, r, y)
    np.testing.assert_array_equal(y, 9.0)  # 8 products of ones, plus the shortcut's one
    assembly = one_tile.inspect_asm(one_tile.signatures[0])
    assert len(re.findall(r"\bprefetch\w*\s", assembly)) == 24
