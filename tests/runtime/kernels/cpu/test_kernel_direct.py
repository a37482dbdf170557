"""Direct convolution kernels (runtime/kernels/cpu/direct.py) against the plain NumPy reference of
test_kernel_conv.py (NCHW, written from the definition), and by float64 finite differences.

``ConvWorkspace(direct=True)`` sends every conv the direct kernels can take (stride 1, undilated,
ungrouped, not 1x1 unpadded) through them, whatever its channel counts; ``direct=False`` never
does. The cases cover one channel (LeNet-5's c1), the four-output-channel blocks and their
remainders (O = 1..9), padding wider than the kernel, asymmetric padding, conv1d (H = 1), and
more images than threads and fewer.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward
from gradcheck import central_difference
from test_kernel_conv import nchw, nhwc, ref_conv, ref_conv_grads, ref_geometry

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STRIDE1 = ((1, 1), (1, 1))  # stride, dilation


def direct_plan(x_shape, w_shape, pads, ws):
    """The workspace's plan for this call: which kernels it takes."""
    n, c, h, w = x_shape
    oh, ow = ref_geometry(x_shape, w_shape, (1, 1), pads, (1, 1))
    x = np.empty((n, h, w, c))
    return ws.plan(x, np.empty(w_shape), (1, 1), pads, (1, 1), 1, np.empty((n, oh, ow, w_shape[0])))


def forward(x, w, b, pads, dtype, ws, activation=-1):
    oh, ow = ref_geometry(x.shape, w.shape, (1, 1), pads, (1, 1))
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    bias = None if b is None else b.astype(dtype)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), bias, (1, 1), pads, (1, 1), 1, out, ws, activation)
    return nchw(out)


def backward(x, w, dy, pads, dtype, ws, bias=True, input_grad=True):
    dx = np.full(nhwc(x).shape, np.nan, dtype) if input_grad else None
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(w.shape[0], np.nan, dtype) if bias else None
    conv2d_backward(nhwc(x).astype(dtype), w.astype(dtype), nhwc(dy).astype(dtype), (1, 1), pads, (1, 1), 1, dx, dw, db, ws)
    return (None if dx is None else nchw(dx)), dw, db


@st.composite
def cases(draw):
    c, o = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pads = ((draw(st.integers(0, 6)), draw(st.integers(0, 3))), (draw(st.integers(0, 3)), draw(st.integers(0, 6))))
    h = draw(st.integers(max(1, kh - sum(pads[0])), 9))
    w = draw(st.integers(max(1, kw - sum(pads[1])), 9))
    n = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, kh, kw))
    b = rng.standard_normal(o) if draw(st.booleans()) else None
    return x, wt, b, pads


@SETTINGS
@given(cases())
def test_forward_matches_reference(case):
    x, w, b, pads = case
    ws = ConvWorkspace(direct=True)
    got = forward(x, w, b, pads, np.float64, ws)
    assert direct_plan(x.shape, w.shape, pads, ws).direct_forward or w.shape[2:] == (1, 1) and pads == ((0, 0), (0, 0))
    np.testing.assert_allclose(got, ref_conv(x, w, b, (1, 1), pads, (1, 1), 1), rtol=1e-12, atol=1e-12)
    # float32: within float32 rounding of the float64 result on the same rounded inputs
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    got32 = forward(x32, w32, b, pads, np.float32, ws)
    scale = ref_conv(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64), None, (1, 1), pads, (1, 1), 1)
    want = ref_conv(x32.astype(np.float64), w32.astype(np.float64), None if b is None else b.astype(np.float32),
                    (1, 1), pads, (1, 1), 1)
    assert np.all(np.abs(got32 - want) <= 1e-5 * scale + 1e-6 * (0 if b is None else np.abs(b).max()) + 1e-30)


@SETTINGS
@given(cases())
def test_weight_and_bias_gradients_match_reference_adjoint(case):
    x, w, b, pads = case
    ws = ConvWorkspace(direct=True)
    oh, ow = ref_geometry(x.shape, w.shape, (1, 1), pads, (1, 1))
    dy = np.random.default_rng(x.size).standard_normal((x.shape[0], w.shape[0], oh, ow))
    dx, dw, db = backward(x, w, dy, pads, np.float64, ws)
    rdx, rdw, rdb = ref_conv_grads(x, w, dy, (1, 1), pads, (1, 1), 1)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "xs, o, k, pads",
    [
        ((2, 1, 8, 8), 6, (5, 5), ((0, 0), (0, 0))),  # LeNet-5's c1, smaller
        ((3, 3, 6, 5), 5, (3, 3), ((1, 1), (1, 1))),  # one block of four and one left over
        ((1, 2, 4, 7), 4, (2, 3), ((2, 0), (1, 3))),  # asymmetric padding, one image
        ((2, 2, 1, 9), 3, (1, 4), ((0, 0), (2, 1))),  # conv1d as H = 1
    ],
)
def test_gradients_match_finite_differences(xs, o, k, pads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, xs[1], *k))
    b = rng.standard_normal(o)
    ws = ConvWorkspace(direct=True)
    assert direct_plan(x.shape, w.shape, pads, ws).direct_weight
    oh, ow = ref_geometry(x.shape, w.shape, (1, 1), pads, (1, 1))
    r = rng.standard_normal((xs[0], o, oh, ow))  # L = sum(r * y), so dL/dy = r

    def loss():
        return float(np.sum(r * forward(x, w, b, pads, np.float64, ws)))

    dx, dw, db = backward(x, w, r, pads, np.float64, ws)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)


def test_direct_and_im2col_agree_on_lenet_shapes_in_float32():
    rng = np.random.default_rng(8)
    for xs, o in (((4, 1, 32, 32), 6), ((4, 6, 14, 14), 16)):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal((o, xs[1], 5, 5)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        pads = ((0, 0), (0, 0))
        on, off = ConvWorkspace(direct=True), ConvWorkspace(direct=False)
        assert not direct_plan(xs, w.shape, pads, off).direct_weight
        np.testing.assert_allclose(forward(x, w, b, pads, np.float32, on), forward(x, w, b, pads, np.float32, off),
                                   rtol=1e-5, atol=1e-4)
        dy = rng.standard_normal((xs[0], o, xs[2] - 4, xs[3] - 4)).astype(np.float32)
        for a, b_ in zip(backward(x, w, dy, pads, np.float32, on), backward(x, w, dy, pads, np.float32, off)):
            np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-3)


def test_the_rule_takes_small_channel_counts_only():
    ws = ConvWorkspace()
    c1 = direct_plan((64, 1, 32, 32), (6, 1, 5, 5), ((0, 0), (0, 0)), ws)
    assert c1.direct_forward and c1.direct_weight
    c3 = direct_plan((64, 6, 14, 14), (16, 6, 5, 5), ((0, 0), (0, 0)), ws)
    assert not c3.direct_forward and not c3.direct_weight
    wide = direct_plan((8, 64, 8, 8), (64, 64, 3, 3), ((1, 1), (1, 1)), ws)
    assert not wide.direct_forward and not wide.direct_weight
    strided = ws.plan(np.empty((1, 8, 8, 1)), np.empty((6, 1, 3, 3)), (2, 2), ((1, 1), (1, 1)), (1, 1), 1,
                      np.empty((1, 4, 4, 6)))
    assert not strided.direct_forward and not strided.direct_weight
