"""The inference stem kernel (runtime/kernels/cpu/stem.py) against the plain NumPy reference of
test_kernel_conv.py (NCHW, written from the definition), and against the im2col + GEMM path it
replaces in the inference plan.

The cases cover 1 to 4 input channels; 32 output channels (whole tiles of 2L channels, L = 8 or 16
float32 lanes by AVX2 or AVX-512) and 33, 40 and 48 (a part tile of channels); output rows shorter
than, equal to and not a multiple of the 6-pixel tile (the written-out remainders); stride 1 and 2;
asymmetric padding; conv1d (H = 1); bias or none, relu or none; and batches that do and do not split
evenly over the threads (the row bands of batch 1).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.activation import TANH
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_forward
from cnnlang.runtime.kernels.cpu.epilogue import NONE, RELU
from cnnlang.runtime.kernels.cpu.stem import bind_stem, stem_applies
from test_kernel_conv import nchw, nhwc, ref_conv, ref_geometry

CASES = [
    # x (N, C, H, W), O, kernel, stride, pads
    ((2, 3, 23, 22), 32, (7, 7), (2, 2), ((3, 3), (3, 3))),  # the 7x7/2 stem, smaller: 12 x 11 out
    ((1, 3, 15, 17), 40, (7, 7), (2, 2), ((3, 2), (3, 4))),  # batch 1 (row bands), asymmetric pads, part tile
    ((3, 1, 9, 13), 33, (3, 3), (1, 1), ((1, 1), (0, 2))),  # 3 images over 2 threads, one channel
    ((2, 4, 6, 5), 32, (2, 3), (1, 2), ((0, 1), (2, 2))),  # 4 channels, 3 pixels a row (< one tile)
    ((2, 2, 1, 30), 48, (1, 5), (1, 1), ((0, 0), (2, 2))),  # conv1d as H = 1: 30 pixels, 5 tiles
]


def run_stem(x, w, b, stride, pads, dtype, kind):
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    bias = None if b is None else b.astype(dtype)
    assert stem_applies(nhwc(x).shape, w.shape, (1, 1), 1, kind)
    bind_stem(nhwc(x).astype(dtype), w.astype(dtype), bias, stride, pads, out, kind, ConvWorkspace())()
    return nchw(out)


def relu(y):
    return np.where(y > 0, y, 0.0)


@pytest.mark.parametrize("xs, o, k, stride, pads", CASES)
@pytest.mark.parametrize("bias, kind", [(True, RELU), (False, NONE)])
def test_forward_matches_reference(xs, o, k, stride, pads, bias, kind):
    rng = np.random.default_rng(o + xs[0])
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, xs[1], *k))
    b = rng.standard_normal(o) if bias else None
    f = relu if kind == RELU else (lambda y: y)
    got = run_stem(x, w, b, stride, pads, np.float64, kind)
    np.testing.assert_allclose(got, f(ref_conv(x, w, b, stride, pads, (1, 1), 1)), rtol=1e-12, atol=1e-12)
    # float32: within float32 rounding of the float64 result on the same rounded inputs
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    got32 = run_stem(x32, w32, b, stride, pads, np.float32, kind)
    b32 = None if b is None else b.astype(np.float32)
    want = f(ref_conv(x32.astype(np.float64), w32.astype(np.float64), b32, stride, pads, (1, 1), 1))
    scale = ref_conv(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64), None, stride, pads, (1, 1), 1)
    assert np.all(np.abs(got32 - want) <= 1e-5 * scale + 1e-6 * (0 if b is None else np.abs(b).max()) + 1e-30)


def test_close_to_the_im2col_path_and_relu_keeps_nan():
    """The same float32 numbers as the path it replaces (conv2d_forward with relu), up to the
    order of the sums; and NaN passes relu, as relu_forward's."""
    xs, o, k, stride, pads = CASES[0]
    rng = np.random.default_rng(1)
    x = nhwc(rng.standard_normal(xs)).astype(np.float32)
    w = rng.standard_normal((o, xs[1], *k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    oh, ow = ref_geometry(xs, w.shape, stride, pads, (1, 1))
    want = np.empty((xs[0], oh, ow, o), np.float32)
    conv2d_forward(x, w, b, stride, pads, (1, 1), 1, want, ConvWorkspace(), RELU)
    got = np.full_like(want, np.nan)
    run = bind_stem(x, w, b, stride, pads, got, RELU, ConvWorkspace())
    run()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
    assert np.mean(got == 0) > 0.2  # relu did cut
    x[1, 5, 6, 0] = np.nan  # in the windows of output rows 1..4, columns 2..4 of image 1
    run()
    assert np.isnan(got[1, 1:5, 2:5]).all() and np.isnan(got).sum() == 4 * 3 * o


def test_thread_counts_agree():
    """Batch 1 splits rows over the threads; the sums per pixel are the same either way."""
    xs, o, k, stride, pads = CASES[1]
    rng = np.random.default_rng(2)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal((o, xs[1], *k)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_stem(x, w, None, stride, pads, np.float32, RELU)
        numba.set_num_threads(previous)
        many = run_stem(x, w, None, stride, pads, np.float32, RELU)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(one, many)


def test_the_rule():
    assert stem_applies((8, 224, 224, 3), (64, 3, 7, 7), (1, 1), 1, RELU)  # ResNet-50's and GoogLeNet's stem
    assert not stem_applies((8, 56, 56, 64), (64, 64, 3, 3), (1, 1), 1, RELU)  # many input channels
    assert not stem_applies((8, 32, 32, 1), (6, 1, 5, 5), (1, 1), 1, RELU)  # few output channels (LeNet-5)
    assert not stem_applies((8, 32, 32, 3), (64, 3, 1, 1), (1, 1), 1, RELU)  # 1x1: a GEMM on x's view
    assert not stem_applies((8, 5, 5, 3), (64, 3, 5, 5), (1, 1), 1, RELU)  # the whole image: a GEMM
    assert not stem_applies((8, 32, 32, 3), (64, 3, 3, 3), (2, 2), 1, RELU)  # dilated
    assert not stem_applies((8, 32, 32, 4), (64, 2, 3, 3), (1, 1), 2, RELU)  # grouped
    assert not stem_applies((8, 32, 32, 3), (64, 3, 3, 3), (1, 1), 1, TANH)
