"""The depthwise kernels (runtime/kernels/cpu/depthwise.py) against the NumPy reference of the
convolution tests (written from the definition, groups = channels) and float64 central
differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu import depthwise
from cnnlang.runtime.kernels.cpu.activation import RELU, TANH
from cnnlang.runtime.kernels.cpu.depthwise import depthwise_backward, depthwise_forward, pack_depthwise_weight
from cnnlang.runtime.kernels.cpu.epilogue import NONE
from gradcheck import central_difference
from test_kernel_conv import nchw, nhwc, ref_conv, ref_conv_grads, ref_geometry

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def forward(x, w, b, stride, pads, dilation, dtype, activation=NONE, packed=False):
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    w = w.astype(dtype)
    depthwise_forward(nhwc(x).astype(dtype), w, None if b is None else b.astype(dtype), stride, pads, dilation, out,
                      activation, pack_depthwise_weight(w) if packed else None)  # fmt: skip
    return nchw(out)


def backward(x, w, dy, stride, pads, dilation, dtype, bias=True, input_grad=True):
    dx = np.full(nhwc(x).shape, np.nan, dtype) if input_grad else None
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(w.shape[0], np.nan, dtype) if bias else None
    depthwise_backward(nhwc(x).astype(dtype), w.astype(dtype), nhwc(dy).astype(dtype), stride, pads, dilation, dx, dw, db)
    return (None if dx is None else nchw(dx)), dw, db


@st.composite
def depthwise_cases(draw):
    c, multiplier = draw(st.integers(1, 9)), draw(st.sampled_from([1, 1, 2, 3]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))), (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + sum(pads[0]) >= dilation[0] * (kh - 1) + 1 and w + sum(pads[1]) >= dilation[1] * (kw - 1) + 1)
    n = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((c * multiplier, 1, kh, kw))
    b = rng.standard_normal(c * multiplier) if draw(st.booleans()) else None
    return x, wt, b, stride, pads, dilation


@SETTINGS
@given(depthwise_cases(), st.booleans())
def test_forward_matches_reference_float64(case, packed):
    x, w, b, stride, pads, dilation = case
    got = forward(x, w, b, stride, pads, dilation, np.float64, packed=packed)
    np.testing.assert_allclose(got, ref_conv(x, w, b, stride, pads, dilation, x.shape[1]), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(depthwise_cases())
def test_backward_matches_reference_adjoint(case):
    x, w, b, stride, pads, dilation = case
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    dy = np.random.default_rng(1).standard_normal((x.shape[0], w.shape[0], oh, ow))
    dx, dw, db = backward(x, w, dy, stride, pads, dilation, np.float64, bias=b is not None)
    rdx, rdw, rdb = ref_conv_grads(x, w, dy, stride, pads, dilation, x.shape[1])
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)


def test_float32_on_a_mobilenet_layer_shape():
    # Wide enough for the SIMD loops' main body and remainder (C = 37), stride 2 with the
    # asymmetric `same` padding of TensorFlow's MobileNet ((0, 1) on each axis).
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 37, 12, 12)).astype(np.float32)
    w = rng.standard_normal((37, 1, 3, 3)).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    args = ((2, 2), ((0, 1), (0, 1)), (1, 1))
    got = forward(x, w, b, *args, np.float32)
    want = ref_conv(x.astype(np.float64), w.astype(np.float64), b, *args, 37)
    scale = ref_conv(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64), np.abs(b), *args, 37)
    assert np.all(np.abs(got - want) <= 1e-6 * scale)


@pytest.mark.parametrize("stride, pads, dilation", [
    ((1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((2, 2), ((0, 1), (0, 1)), (1, 1)),
    ((1, 2), ((2, 0), (1, 2)), (2, 1)),
    ((1, 1), ((0, 0), (0, 0)), (1, 2)),
])  # fmt: skip
@pytest.mark.parametrize("wide", [True, False])
def test_3x3_windows_inside_the_image_take_one_pass(stride, pads, dilation, wide, monkeypatch):
    # The one-pass path (interior pixels of a 3x3 kernel) beside the tap-by-tap one (the border),
    # written contiguously (a row at a time when the stride along W is 1, unless the row-wide
    # weight is turned off) and into a channel slice.
    if not wide:
        monkeypatch.setattr(depthwise, "WIDE_BYTES", 0)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 9, 10))
    w = rng.standard_normal((5, 1, 3, 3))
    b = rng.standard_normal(5)
    want = ref_conv(x, w, b, stride, pads, dilation, 5)
    np.testing.assert_allclose(forward(x, w, b, stride, pads, dilation, np.float64), want, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(want.shape)
    dx, dw, _ = backward(x, w, dy, stride, pads, dilation, np.float64, bias=False)
    rdx, rdw, _ = ref_conv_grads(x, w, dy, stride, pads, dilation, 5)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    wider = np.zeros((*nhwc(want).shape[:3], 7))
    depthwise_forward(nhwc(x), w, b, stride, pads, dilation, wider[..., 1:6])
    np.testing.assert_allclose(nchw(wider[..., 1:6]), want, rtol=1e-12, atol=1e-12)


TILE_CASES = [
    # stride, pads, dilation, (H, W)
    ((1, 1), ((1, 1), (1, 1)), (1, 1), (7, 15)),
    ((1, 1), ((0, 2), (3, 1)), (2, 2), (7, 15)),
    ((2, 2), ((0, 1), (0, 1)), (1, 1), (9, 30)),  # MobileNet's stride-2 `same`
    ((2, 1), ((1, 1), (2, 0)), (1, 2), (6, 15)),
    ((3, 3), ((1, 2), (2, 1)), (1, 1), (8, 29)),
    ((2, 2), ((1, 1), (1, 1)), (2, 2), (7, 13)),  # dx by _backward_input (stride and dilation 2)
    ((1, 1), ((1, 1), (1, 1)), (1, 1), (3, 2)),  # no column's window inside the image
    ((1, 1), ((3, 3), (1, 1)), (2, 1), (2, 9)),  # rows whose window misses the image
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [32, 72])
@pytest.mark.parametrize("stride, pads, dilation, size", TILE_CASES)
def test_register_tiles_of_3x3_windows(dtype, channels, stride, pads, dilation, size):
    # depthwise_tile.py's tiles: 32 and 72 channels (whole vectors at AVX2's width, 32 at
    # AVX-512's too: tiles of 1, 2 and 8 vectors), rows of 15 columns (tiles of 8 and 4 pixels,
    # then single ones) and narrow ones, windows crossing every edge, into a channel slice too,
    # relu keeping NaN, and dx; float32 within 1e-6 of the float64 reference's scale (its sums of
    # absolute values).
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, channels, *size))
    x[1, 5, size[0] // 2, size[1] // 2] = np.nan
    w = rng.standard_normal((channels, 1, 3, 3))
    b = rng.standard_normal(channels)
    args = (stride, pads, dilation)
    want = ref_conv(x, w, b, *args, channels)
    scale = ref_conv(np.abs(x), np.abs(w), np.abs(b), *args, channels)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    got = forward(x, w, b, *args, dtype, RELU)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.all(np.abs(got - np.maximum(want, 0)) <= tolerance * scale, where=~np.isnan(want))
    wider = np.full((*nhwc(want).shape[:3], channels + 8), np.nan, dtype)
    depthwise_forward(nhwc(x).astype(dtype), w.astype(dtype), b.astype(dtype), *args, wider[..., 3 : channels + 3])
    assert np.all(np.abs(nchw(wider[..., 3 : channels + 3]) - want) <= tolerance * scale, where=~np.isnan(want))
    assert np.isnan(wider[..., :3]).all() and np.isnan(wider[..., channels + 3 :]).all()
    # the input gradient's tiles (the window mirrored)
    x[1, 5] = 0.0
    dy = rng.standard_normal(want.shape)
    rdx, _, _ = ref_conv_grads(x, w, dy, *args, channels)
    dx_scale, _, _ = ref_conv_grads(np.abs(x), np.abs(w), np.abs(dy), *args, channels)
    dx, _, _ = backward(x, w, dy, *args, dtype, bias=False)
    assert np.all(np.abs(dx - rdx) <= tolerance * dx_scale)


@pytest.mark.parametrize("kind", [RELU, TANH])
def test_fused_activation_epilogue(kind):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 6, 7))
    w = rng.standard_normal((10, 1, 3, 3))
    b = rng.standard_normal(10)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1))
    plain = ref_conv(x, w, b, *args, 5)
    want = np.maximum(plain, 0) if kind == RELU else np.tanh(plain)
    np.testing.assert_allclose(forward(x, w, b, *args, np.float64, kind), want, rtol=1e-12, atol=1e-12)


def test_writes_into_a_channel_slice_of_a_larger_array():
    rng = np.random.default_rng(4)
    x = nhwc(rng.standard_normal((2, 4, 5, 5)))
    w = rng.standard_normal((4, 1, 3, 3))
    concat = np.full((2, 5, 5, 9), 7.0)
    depthwise_forward(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), concat[..., 3:7])
    np.testing.assert_allclose(nchw(concat[..., 3:7]), ref_conv(nchw(x), w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 4),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    assert np.all(concat[..., :3] == 7.0) and np.all(concat[..., 7:] == 7.0)


FD_CASES = [
    # (N, C, H, W), multiplier, (KH, KW), stride, pads, dilation
    ((2, 3, 5, 6), 1, (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),
    ((1, 2, 7, 6), 2, (3, 2), (2, 3), ((0, 2), (1, 0)), (1, 1)),
    ((2, 3, 7, 7), 1, (3, 3), (2, 2), ((0, 1), (0, 1)), (2, 1)),  # asymmetric `same`, dilated
    ((1, 2, 6, 6), 3, (2, 2), (3, 3), ((0, 0), (0, 0)), (1, 1)),  # stride > kernel: gaps get 0
    ((1, 2, 8, 9), 1, (3, 3), (1, 1), ((2, 0), (1, 2)), (2, 1)),  # dx of interior pixels in one pass
]


@pytest.mark.parametrize("xs, multiplier, kernel, stride, pads, dilation", FD_CASES)
def test_backward_matches_finite_differences(xs, multiplier, kernel, stride, pads, dilation):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(xs)
    w = rng.standard_normal((xs[1] * multiplier, 1, *kernel))
    b = rng.standard_normal(w.shape[0])
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    r = rng.standard_normal((xs[0], w.shape[0], oh, ow))  # L = sum(r * y), so dL/dy = r

    def loss():
        return float(np.sum(r * forward(x, w, b, stride, pads, dilation, np.float64)))

    dx, dw, db = backward(x, w, r, stride, pads, dilation, np.float64)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)


def test_backward_skips_what_is_not_asked_and_rejects_bad_shapes():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((4, 1, 3, 3))
    dy = rng.standard_normal((2, 4, 3, 3))
    args = ((2, 2), ((1, 1), (1, 1)), (1, 1))
    dx, dw, db = backward(x, w, dy, *args, np.float64, bias=False, input_grad=False)
    assert dx is None and db is None
    np.testing.assert_allclose(dw, ref_conv_grads(x, w, dy, *args, 4)[1], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="output has shape"):
        depthwise_forward(nhwc(x), w, None, *args, np.empty((2, 3, 3, 5)))
    with pytest.raises(ValueError, match="does not fit"):
        depthwise_forward(nhwc(x), np.ones((6, 1, 3, 3)), None, *args, np.empty((2, 3, 3, 6)))
