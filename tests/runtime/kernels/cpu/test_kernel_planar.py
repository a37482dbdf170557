"""The one-input-channel weight gradient (runtime/kernels/cpu/planar.py) against the plain NumPy
reference of test_kernel_conv.py and by float64 finite differences.

The shapes cover the 2 x 5 tile (LeNet-5's 5-wide kernel), its remainders (an odd channel count,
kernels narrower and wider than 5), padding, rows that end inside a vector, one image per thread
and fewer images than threads, with and without the bias."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward
from gradcheck import central_difference
from test_kernel_conv import nchw, nhwc, ref_conv_grads, ref_geometry

STRIDE = (1, 1)
CASES = [
    ((3, 1, 9, 12), 6, (5, 5), ((0, 0), (0, 0))),  # LeNet-5's c1, smaller: three 2 x 5 tiles a row
    ((2, 1, 7, 9), 5, (3, 7), ((1, 2), (0, 3))),  # 5 + 2 columns, an odd channel left, padding
    ((1, 1, 4, 19), 3, (2, 2), ((0, 1), (1, 0))),  # only the single tile; rows cross vectors
]


def weight_grads(x, w, dy, pads, dtype, bias=True):
    ws = ConvWorkspace()
    xs = nhwc(x).astype(dtype)
    ys = nhwc(dy).astype(dtype)
    assert ws.plan(xs, w, STRIDE, pads, (1, 1), 1, ys).planar_weight
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(w.shape[0], np.nan, dtype) if bias else None
    conv2d_backward(xs, w.astype(dtype), ys, STRIDE, pads, (1, 1), 1, None, dw, db, ws)
    return dw, db


@pytest.mark.parametrize("xs, o, k, pads", CASES)
def test_weight_grad_matches_reference(xs, o, k, pads):
    rng = np.random.default_rng(o)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, 1, *k))
    dy = rng.standard_normal((xs[0], o, *ref_geometry(xs, w.shape, STRIDE, pads, (1, 1))))
    _, rdw, rdb = ref_conv_grads(x, w, dy, STRIDE, pads, (1, 1), 1)
    dw, db = weight_grads(x, w, dy, pads, np.float64)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    dw, none = weight_grads(x, w, dy, pads, np.float64, bias=False)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    # float32: within float32 rounding of the float64 sums of the same rounded inputs
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    _, want, want_b = ref_conv_grads(x32.astype(np.float64), w, dy32.astype(np.float64), STRIDE, pads, (1, 1), 1)
    _, scale, scale_b = ref_conv_grads(np.abs(x32).astype(np.float64), w, np.abs(dy32).astype(np.float64), STRIDE, pads,
                                       (1, 1), 1)
    dw32, db32 = weight_grads(x32, w, dy32, pads, np.float32)
    assert np.all(np.abs(dw32 - want) <= 1e-5 * scale + 1e-30)
    assert np.all(np.abs(db32 - want_b) <= 1e-5 * scale_b + 1e-30)


@pytest.mark.parametrize("xs, o, k, pads", CASES[1:])
def test_weight_grad_matches_finite_differences(xs, o, k, pads):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, 1, *k))
    b = rng.standard_normal(o)
    oh, ow = ref_geometry(xs, w.shape, STRIDE, pads, (1, 1))
    r = rng.standard_normal((xs[0], o, oh, ow))  # L = sum(r * y), so dL/dy = r
    out = np.empty((xs[0], oh, ow, o))

    def loss():
        conv2d_forward(nhwc(x), w, b, STRIDE, pads, (1, 1), 1, out, ConvWorkspace(direct=False))
        return float(np.sum(r * nchw(out)))

    dw, db = weight_grads(x, w, r, pads, np.float64)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)
