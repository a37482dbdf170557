"""The inference 1x1 conv kernel (runtime/kernels/cpu/gemm_epilogue.py) against a plain NumPy
reference (the GEMM and its epilogue in float64), and against the GEMM + epilogue.py path it
replaces.

The cases cover pixel counts that are and are not multiples of the 6-pixel tile and of the
96-pixel block (the buffered last pixels); output channels below, at and above whole tiles (16
float32 lanes, 8 float64: the buffered part tile); a residual or none, bias or none, relu or none;
and an output that is a channel slice of a wider array (a concat buffer). The kernel on im2col's
columns (bind_columns) against the NumPy conv reference of test_kernel_conv.py.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.activation import TANH
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, pack_weight
from cnnlang.runtime.kernels.cpu.epilogue import NONE, RELU, bias_residual_activation
from cnnlang.runtime.kernels.cpu.gemm_epilogue import bind_columns, bind_pointwise, pointwise_applies
from test_kernel_conv import nchw, nhwc, ref_conv, ref_geometry

CASES = [
    # pixels, C, O, residual, bias, kind
    (100, 5, 32, True, True, RELU),  # 96 + 4 pixels: the second block is one part tile
    (6, 3, 40, False, True, NONE),  # one tile of pixels; 40 = 2 tiles + 8 channels
    (197, 17, 9, True, False, RELU),  # fewer channels than a tile; 197 = 2 blocks + 5
    (13, 64, 16, False, False, RELU),  # exactly one tile of channels
]


def reference(x, w, b, r, kind):
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y += b
    if r is not None:
        y += r
    return np.where(y > 0, y, 0.0) if kind == RELU else y


def run(x, w, b, r, kind, dtype, wider=0):
    """The kernel's output; with ``wider``, y is channels [wider, wider + O) of a wider array."""
    m, o = x.shape[0], w.shape[0]
    full = np.full((m, o + 2 * wider), np.nan, dtype)
    y = full[:, wider : wider + o]
    cast = (lambda a: None if a is None else np.ascontiguousarray(a, dtype))
    bind_pointwise(cast(x), cast(w), cast(b), y, kind, ConvWorkspace(), cast(r))()
    if wider:
        assert np.isnan(full[:, :wider]).all() and np.isnan(full[:, wider + o :]).all()  # nothing written outside
    return y


@pytest.mark.parametrize("m, c, o, residual, bias, kind", CASES)
def test_forward_matches_reference(m, c, o, residual, bias, kind):
    rng = np.random.default_rng(m + c + o)
    x = rng.standard_normal((m, c))
    w = rng.standard_normal((o, c))
    b = rng.standard_normal(o) if bias else None
    r = rng.standard_normal((m, o)) if residual else None
    np.testing.assert_allclose(run(x, w, b, r, kind, np.float64), reference(x, w, b, r, kind), rtol=1e-12, atol=1e-12)
    # float32: within float32 rounding of the float64 result on the same rounded inputs
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    r32 = None if r is None else r.astype(np.float32)
    want = reference(x32, w32, b32, r32, kind)
    scale = np.abs(x32).astype(np.float64) @ np.abs(w32).astype(np.float64).T
    extra = (0 if b is None else np.abs(b32).max()) + (0 if r is None else np.abs(r32))
    got = run(x32, w32, b32, r32, kind, np.float32, wider=3)
    assert np.all(np.abs(got - want) <= 1e-5 * scale + 1e-6 * extra + 1e-30)


def test_close_to_the_gemm_path_and_relu_keeps_nan():
    """Against np.matmul + bias_residual_activation (the path it replaces), on one and on all
    threads; NaN passes relu, as relu_forward's."""
    rng = np.random.default_rng(5)
    m, c, o = 200, 24, 48
    x = rng.standard_normal((m, c)).astype(np.float32)
    w = rng.standard_normal((o, c)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    r = rng.standard_normal((m, o)).astype(np.float32)
    want = x @ w.T
    bias_residual_activation(want, b, r, RELU)
    got = run(x, w, b, r, RELU, np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        np.testing.assert_array_equal(run(x, w, b, r, RELU, np.float32), got)  # the same sums in any split
    finally:
        numba.set_num_threads(previous)
    x[150, 3] = np.nan
    got = run(x, w, b, r, RELU, np.float32)
    assert np.isnan(got[150]).all() and np.isnan(got).sum() == o


def test_the_rule():
    weight = 256 * 64 * 4  # ResNet-50's 64 -> 256 1x1, float32
    assert pointwise_applies(8 * 56 * 56, RELU, weight) and pointwise_applies(8 * 14 * 14, NONE, weight)
    assert pointwise_applies(8 * 7 * 7, RELU, 512 * 512 * 4)  # ResNet-50's last stage at batch 8: 512 -> 512
    assert pointwise_applies(8 * 7 * 7, RELU, 2048 * 512 * 4)  # its 2048 -> 512 (4 MB)
    assert not pointwise_applies(8 * 7 * 7, RELU, 4608 * 512 * 4)  # its stride-2 3x3: too much weight, OpenBLAS
    assert not pointwise_applies(7 * 7, RELU, weight)  # few pixels: OpenBLAS's serial GEMM
    assert not pointwise_applies(8 * 56 * 56, TANH, weight)  # epilogue.py's


@pytest.mark.parametrize("dtype, tolerance", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_columns_match_the_reference_conv(dtype, tolerance):
    """bind_columns: im2col per chunk of output rows (3 rows a chunk here, forced: 10 rows make 4
    chunks, the last short) and the kernel on the columns; a 3x3 stride-2 padded conv, relu."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 5, 9, 8))  # N, C, H, W
    w = rng.standard_normal((20, 5, 3, 3))
    b = rng.standard_normal(20)
    stride, pads = (2, 2), ((1, 1), (1, 0))
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    ws = ConvWorkspace()
    xl = nhwc(x).astype(dtype)
    y = np.full((2, oh, ow, 20), np.nan, dtype)
    plan = ws.plan(xl, w.astype(dtype), stride, pads, (1, 1), 1, y)
    plan.chunk = 3
    bind_columns(xl, pack_weight(w.astype(dtype)), b.astype(dtype), y.reshape(-1, 20), RELU, ws, plan)()
    want = ref_conv(x, w, b, stride, pads, (1, 1), 1)
    np.testing.assert_allclose(nchw(y), np.where(want > 0, want, 0.0), rtol=0, atol=tolerance * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, c, o", [(23, 9, 20), (8, 33, 72), (4, 5, 40), (61, 64, 48)])
@pytest.mark.parametrize("residual", [False, True])
def test_loop_orders_give_the_same_values(dtype, m, c, o, residual):
    """pointwise.fused_gemm's orders (group 1: every panel per row block; group 8; few rows: the
    panels split over the threads) compute each output by the same sums: equal bit for bit, and
    to the reference; with O = 20 in float32 a half-wide last panel, with a residual finished
    outside the tile."""
    rng = np.random.default_rng(m * c + o)
    x = rng.standard_normal((m, c)).astype(dtype)
    w = rng.standard_normal((o, c)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    r = rng.standard_normal((m, o)).astype(dtype) if residual else None
    outputs = []
    for group in (1, 8):
        for threads in (1, 2):
            y = np.full((m, o), np.nan, dtype)
            with_threads = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            try:
                bind_pointwise(x, w, b, y, RELU, ConvWorkspace(), r, group=group)()
            finally:
                numba.set_num_threads(with_threads)
            outputs.append(y)
    for y in outputs[1:]:
        np.testing.assert_array_equal(y, outputs[0])
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(outputs[0], reference(x, w, b, r, RELU), rtol=tolerance, atol=tolerance * np.sqrt(c))
