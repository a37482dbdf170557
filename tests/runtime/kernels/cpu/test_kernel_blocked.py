"""Register-blocked convolution kernels (runtime/kernels/cpu/blocked.py) against the plain NumPy
reference of test_kernel_conv.py (NCHW, written from the definition), and by float64 finite
differences.

``ConvWorkspace(blocked=True)`` sends every conv the blocked kernels can take (undilated,
ungrouped, not 1x1 unpadded) through them, whatever its channel counts: one input channel at
stride 1 takes the planar forward, a window over the whole image the GEMM. The cases cover one
input channel, output channels below, at and above one tile (8 float32 lanes narrow, 16 wide;
float64 has half as many), so every tile shape and its row and channel remainders run, stride 2,
asymmetric padding (wider than the kernel too), conv1d (H = 1), and fewer images than threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward
from gradcheck import central_difference
from test_kernel_conv import nchw, nhwc, ref_conv, ref_conv_grads, ref_geometry

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def plan_of(x_shape, w_shape, stride, pads, ws):
    """The workspace's plan for this call: which kernels it takes."""
    n, c, h, w = x_shape
    oh, ow = ref_geometry(x_shape, w_shape, stride, pads, (1, 1))
    x = np.empty((n, h, w, c))
    return ws.plan(x, np.empty(w_shape), stride, pads, (1, 1), 1, np.empty((n, oh, ow, w_shape[0])))


def forward(x, w, b, stride, pads, dtype, ws, keep=False):
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    bias = None if b is None else b.astype(dtype)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), bias, stride, pads, (1, 1), 1, out, ws, keep=keep)
    return nchw(out)


def backward(x, w, dy, stride, pads, dtype, ws, bias=True):
    dx = np.full(nhwc(x).shape, np.nan, dtype)
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(w.shape[0], np.nan, dtype) if bias else None
    conv2d_backward(nhwc(x).astype(dtype), w.astype(dtype), nhwc(dy).astype(dtype), stride, pads, (1, 1), 1, dx, dw,
                    db, ws)
    return nchw(dx), dw, db


@st.composite
def cases(draw):
    c, o = draw(st.integers(1, 7)), draw(st.sampled_from([1, 3, 6, 8, 9, 16, 17, 33]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(2, 5))
    s = draw(st.integers(1, 2))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 6))))
    h = draw(st.integers(max(1, kh - sum(pads[0])), 8))
    w = draw(st.integers(max(1, kw - sum(pads[1])), 11))
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, kh, kw))
    b = rng.standard_normal(o) if draw(st.booleans()) else None
    return x, wt, b, (s, s), pads


@SETTINGS
@given(cases())
def test_forward_matches_reference(case):
    x, w, b, stride, pads = case
    ws = ConvWorkspace(blocked=True)
    plan = plan_of(x.shape, w.shape, stride, pads, ws)
    assume(not plan.whole)  # (a window over the whole image is one GEMM: test_whole_window_gemm)
    assert plan.blocked and plan.planar == (x.shape[1] == 1 and stride == (1, 1))
    got = forward(x, w, b, stride, pads, np.float64, ws)
    np.testing.assert_allclose(got, ref_conv(x, w, b, stride, pads, (1, 1), 1), rtol=1e-12, atol=1e-12)
    # float32: within float32 rounding of the float64 result on the same rounded inputs
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    got32 = forward(x32, w32, b, stride, pads, np.float32, ws)
    scale = ref_conv(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64), None, stride, pads, (1, 1), 1)
    want = ref_conv(x32.astype(np.float64), w32.astype(np.float64), None if b is None else b.astype(np.float32),
                    stride, pads, (1, 1), 1)
    assert np.all(np.abs(got32 - want) <= 1e-5 * scale + 1e-6 * (0 if b is None else np.abs(b).max()) + 1e-30)


@SETTINGS
@given(cases())
def test_gradients_match_reference_adjoint(case):
    x, w, b, stride, pads = case
    ws = ConvWorkspace(blocked=True)
    plan = plan_of(x.shape, w.shape, stride, pads, ws)
    assume(not plan.whole)
    assert plan.blocked
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    dy = np.random.default_rng(x.size).standard_normal((x.shape[0], w.shape[0], oh, ow))
    dx, dw, db = backward(x, w, dy, stride, pads, np.float64, ws)
    rdx, rdw, rdb = ref_conv_grads(x, w, dy, stride, pads, (1, 1), 1)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "xs, o, k, stride, pads",
    [
        ((2, 3, 9, 9), 6, (5, 5), (1, 1), ((0, 0), (0, 0))),  # LeNet-5's c3, smaller: one narrow float32 tile
        ((1, 2, 6, 7), 9, (3, 2), (1, 1), ((2, 0), (1, 1))),  # asymmetric padding; 9 = a wide tile, 1 row of 4 left
        ((2, 1, 7, 6), 5, (3, 3), (2, 2), ((1, 1), (0, 1))),  # stride 2, one input channel
        ((2, 1, 9, 8), 6, (5, 5), (1, 1), ((1, 0), (0, 2))),  # LeNet-5's c1, smaller: the planar forward's 6-row tile
        ((1, 1, 5, 19), 11, (2, 3), (1, 1), ((0, 1), (1, 0))),  # planar: 6 + 4 + 1 rows, 2 pixel tiles
        ((2, 2, 1, 9), 3, (1, 4), (1, 1), ((0, 0), (2, 1))),  # conv1d as H = 1
    ],
)
def test_gradients_match_finite_differences(xs, o, k, stride, pads):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, xs[1], *k))
    b = rng.standard_normal(o)
    ws = ConvWorkspace(blocked=True)
    assert plan_of(x.shape, w.shape, stride, pads, ws).blocked
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    r = rng.standard_normal((xs[0], o, oh, ow))  # L = sum(r * y), so dL/dy = r

    def loss():
        return float(np.sum(r * forward(x, w, b, stride, pads, np.float64, ws)))

    dx, dw, db = backward(x, w, r, stride, pads, np.float64, ws)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("n, c, h, w, o", [(3, 2, 3, 4, 5), (6, 3, 2, 2, 17), (1, 1, 1, 3, 40)])
def test_whole_window_gemm(n, c, h, w, o):
    """A window over the whole image (LeNet-5's c5): forward, dx and dW are blocked.py's GEMM,
    with row (4) and column (2L) remainders."""
    rng = np.random.default_rng(n * o)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, h, w))
    b = rng.standard_normal(o)
    pads = ((0, 0), (0, 0))
    ws = ConvWorkspace(blocked=True)
    assert plan_of(x.shape, wt.shape, (1, 1), pads, ws).blocked_gemm
    want = ref_conv(x, wt, b, (1, 1), pads, (1, 1), 1)
    np.testing.assert_allclose(forward(x, wt, b, (1, 1), pads, np.float64, ws), want, rtol=1e-12, atol=1e-12)
    r = rng.standard_normal((n, o, 1, 1))
    dx, dw, db = backward(x, wt, r, (1, 1), pads, np.float64, ws)
    for got, want in zip((dx, dw, db), ref_conv_grads(x, wt, r, (1, 1), pads, (1, 1), 1)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    def loss():
        return float(np.sum(r * forward(x, wt, b, (1, 1), pads, np.float64, ws)))

    np.testing.assert_allclose(dw, central_difference(loss, wt), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    x32, w32 = x.astype(np.float32), wt.astype(np.float32)
    want = ref_conv(x32.astype(np.float64), w32.astype(np.float64), None, (1, 1), pads, (1, 1), 1)
    scale = ref_conv(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64), None, (1, 1), pads, (1, 1), 1)
    assert np.all(np.abs(forward(x32, w32, None, (1, 1), pads, np.float32, ws) - want) <= 1e-5 * scale + 1e-30)


def test_the_rule_takes_lenet_convs_in_training_and_inference(monkeypatch):
    ws = ConvWorkspace()
    c3 = plan_of((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)), ws)
    assert c3.blocked
    c1 = plan_of((64, 1, 32, 32), (6, 1, 5, 5), (1, 1), ((0, 0), (0, 0)), ws)
    assert c1.planar and c1.planar_weight and not c1.blocked  # c1: planar forward, planar.py's dW
    assert plan_of((64, 16, 5, 5), (120, 16, 5, 5), (1, 1), ((0, 0), (0, 0)), ws).blocked_gemm  # c5
    assert not plan_of((8, 16, 8, 8), (32, 16, 3, 3), (1, 1), ((1, 1), (1, 1)), ws).blocked
    # a workspace that forces another kernel keeps it
    assert not plan_of((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)), ConvWorkspace(direct=False)).blocked
    # inference (no keep) runs the same kernels as training: c3's blocked forward, c1's planar one
    import cnnlang.runtime.kernels.cpu.conv as conv

    ran = []

    def recorded(name):
        kernel = getattr(conv, name)

        def run(*args):
            ran.append(name)
            return kernel(*args)

        return run

    for name in ("_blocked_forward", "planar_forward"):
        monkeypatch.setattr(conv, name, recorded(name))
    rng = np.random.default_rng(3)
    for x_shape, w_shape, kernel in [((2, 6, 14, 14), (16, 6, 5, 5), "_blocked_forward"),
                                     ((2, 1, 12, 12), (6, 1, 5, 5), "planar_forward")]:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        for keep in (True, False):
            ran.clear()
            got = forward(x, w, None, (1, 1), ((0, 0), (0, 0)), np.float64, ConvWorkspace(), keep=keep)
            assert ran == [kernel]
            want = ref_conv(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
