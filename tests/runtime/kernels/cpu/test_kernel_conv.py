"""Convolution kernels (runtime/kernels/cpu/conv.py) against a plain NumPy reference in N x C x H x W.

The reference is written from the definition, not from the kernels: zero-pad the input
explicitly (before/after per axis), then for every kernel tap (kh, kw) take the strided slice of
the padded input that this tap sees — rows kh*dh + oh*sh — and contract it with the tap's weights
per group. That is cross-correlation (no kernel flip), as in every CNN framework. Its gradients are
the adjoint of the same loops. Gradients are also checked by float64 central differences.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu import conv as conv_module
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward, output_size
from cnnlang.runtime.kernels.cpu.epilogue import NONE, RELU, TANH
from cnnlang.runtime.kernels.cpu.pointwise import pointwise_forward
from gradcheck import central_difference

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def ref_geometry(x_shape, w_shape, stride, pads, dilation):
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    (pt, pb), (pl, pr) = pads
    oh = (h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return oh, ow


def tap(padded, kh, kw, stride, dilation, oh, ow):
    """The N x C x OH x OW slice of the padded input that kernel tap (kh, kw) multiplies."""
    r, c = kh * dilation[0], kw * dilation[1]
    return padded[:, :, r : r + stride[0] * (oh - 1) + 1 : stride[0], c : c + stride[1] * (ow - 1) + 1 : stride[1]]


def ref_conv(x, w, b, stride, pads, dilation, groups):
    """x N x C x H x W, w O x C/g x KH x KW → N x O x OH x OW, in float64."""
    n, c, h, wd = x.shape
    o, cg, kh_, kw_ = w.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    padded = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    padded[:, :, pt : pt + h, pl : pl + wd] = x
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    for g in range(groups):
        for kh in range(kh_):
            for kw in range(kw_):
                part = tap(padded, kh, kw, stride, dilation, oh, ow)[:, g * cg : (g + 1) * cg]
                y[:, g * og : (g + 1) * og] += np.einsum("ncij,oc->noij", part, w[g * og : (g + 1) * og, :, kh, kw])
    if b is not None:
        y += np.asarray(b, np.float64)[None, :, None, None]
    return y


def ref_conv_grads(x, w, dy, stride, pads, dilation, groups):
    """The adjoint of ref_conv: (dx, dw, db) for upstream gradient dy (N x O x OH x OW)."""
    n, c, h, wd = x.shape
    o, cg, kh_, kw_ = w.shape
    (pt, pb), (pl, pr) = pads
    oh, ow = dy.shape[2:]
    padded = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    padded[:, :, pt : pt + h, pl : pl + wd] = x
    dpadded = np.zeros_like(padded)
    dw = np.zeros(w.shape)
    og = o // groups
    for g in range(groups):
        dyg = dy[:, g * og : (g + 1) * og]
        for kh in range(kh_):
            for kw in range(kw_):
                part = tap(padded, kh, kw, stride, dilation, oh, ow)[:, g * cg : (g + 1) * cg]
                dw[g * og : (g + 1) * og, :, kh, kw] = np.einsum("ncij,noij->oc", part, dyg)
                dpart = tap(dpadded, kh, kw, stride, dilation, oh, ow)[:, g * cg : (g + 1) * cg]
                dpart += np.einsum("noij,oc->ncij", dyg, w[g * og : (g + 1) * og, :, kh, kw])
    dx = dpadded[:, :, pt : pt + h, pl : pl + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))


def run_forward(x, w, b, stride, pads, dilation, groups, dtype, workspace=None):
    """The kernel on NCHW inputs: converts, runs channels-last, returns NCHW."""
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    bias = None if b is None else b.astype(dtype)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), bias, stride, pads, dilation, groups, out, workspace)
    return nchw(out)


def run_backward(x, w, dy, stride, pads, dilation, groups, dtype, workspace=None, bias=True, input_grad=True):
    dx = np.full(nhwc(x).shape, np.nan, dtype) if input_grad else None
    dw = np.full(w.shape, np.nan, dtype)
    db = np.full(w.shape[0], np.nan, dtype) if bias else None
    conv2d_backward(
        nhwc(x).astype(dtype), w.astype(dtype), nhwc(dy).astype(dtype), stride, pads, dilation, groups, dx, dw, db, workspace
    )
    return (None if dx is None else nchw(dx)), dw, db


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))), (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    assume(h + sum(pads[0]) >= dilation[0] * (kh - 1) + 1 and w + sum(pads[1]) >= dilation[1] * (kw - 1) + 1)
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    # A tiny column budget forces chunks of one output row or a few: chunk seams get exercised.
    workspace = ConvWorkspace(budget=draw(st.sampled_from([1, 300, 1 << 20])), min_pixels=1)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cg * groups, h, w))
    wt = rng.standard_normal((og * groups, cg, kh, kw))
    b = rng.standard_normal(og * groups) if bias else None
    return x, wt, b, stride, pads, dilation, groups, workspace


# ------------------------------------------------------------------ forward


@SETTINGS
@given(conv_cases())
def test_forward_matches_reference_float64(case):
    x, w, b, stride, pads, dilation, groups, ws = case
    got = run_forward(x, w, b, stride, pads, dilation, groups, np.float64, ws)
    np.testing.assert_allclose(got, ref_conv(x, w, b, stride, pads, dilation, groups), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(conv_cases())
def test_forward_matches_reference_float32(case):
    x, w, b, stride, pads, dilation, groups, ws = case
    # Compare against float64 arithmetic on the same float32-rounded inputs. A float32 dot
    # product of K terms (any summation order) errs by at most about K * 2**-24 * sum|terms|;
    # K <= 27 here, so 1e-5 * sum|terms| (+ the bias's own rounding) is a safe, honest bound.
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    got = run_forward(x32, w32, b32, stride, pads, dilation, groups, np.float32, ws)
    assert got.dtype == np.float32
    want = ref_conv(x32.astype(np.float64), w32.astype(np.float64), b32, stride, pads, dilation, groups)
    scale = ref_conv(np.abs(x32).astype(np.float64), np.abs(w32).astype(np.float64), None, stride, pads, dilation, groups)
    bound = 1e-5 * scale + 1e-6 * (0 if b is None else np.abs(b32).astype(np.float64)[None, :, None, None])
    assert np.all(np.abs(got - want) <= bound + 1e-30)


def test_lecture_example_cross_correlation():
    # input [[a, b, c, d], [e, f, g, h], [i, j, k, l]], kernel [[w, x], [y, z]]: distinct primes,
    # so every entry below identifies exactly which products were summed.
    a, b, c, d, e, f, g, h, i, j, k, l = 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37
    w, x, y, z = 41, 43, 47, 53
    image = np.array([[[[a, b, c, d], [e, f, g, h], [i, j, k, l]]]], np.float64)
    kernel = np.array([[[[w, x], [y, z]]]], np.float64)
    out = np.empty((1, 2, 3, 1))
    conv2d_forward(nhwc(image), kernel, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, out)
    expected = np.array(
        [
            [a * w + b * x + e * y + f * z, b * w + c * x + f * y + g * z, c * w + d * x + g * y + h * z],
            [e * w + f * x + i * y + j * z, f * w + g * x + j * y + k * z, g * w + h * x + k * y + l * z],
        ],
        np.float64,
    )
    np.testing.assert_array_equal(out[0, :, :, 0], expected)
    assert out[0, 0, 0, 0] == 2 * 41 + 3 * 43 + 11 * 47 + 13 * 53  # aw + bx + ey + fz = 1389


def test_weighted_moving_average_conv1d():
    # Sensor readings x0..x17 = 1.00, 1.10, ..., 2.70 and weights w0 = 0.5 (newest reading),
    # w-1 = 0.4, w-2 = 0.04, w-3 = 0.02, w-4 = 0.02, w-5 = 0.01, w-6 = 0.01 (oldest); they sum to 1.
    readings = np.round(1.0 + 0.1 * np.arange(18), 2)
    w0, w_1, w_2, w_3, w_4, w_5, w_6 = 0.5, 0.4, 0.04, 0.02, 0.02, 0.01, 0.01
    # Cross-correlation multiplies kernel[j] with x[t - 6 + j], so the kernel lists the weights
    # oldest first: the reverse of w0, w-1, ..., w-6.
    kernel = np.array([w_6, w_5, w_4, w_3, w_2, w_1, w0])
    out = np.empty((1, 1, 12, 1))  # conv1d: N x L x C runs as N x 1 x L x C
    conv2d_forward(readings.reshape(1, 1, 18, 1), kernel.reshape(1, 1, 1, 7), None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, out)
    x = readings
    s6 = x[6] * w0 + x[5] * w_1 + x[4] * w_2 + x[3] * w_3 + x[2] * w_4 + x[1] * w_5 + x[0] * w_6
    # by hand: 1.6*0.5 + 1.5*0.4 + 1.4*0.04 + 1.3*0.02 + 1.2*0.02 + 1.1*0.01 + 1.0*0.01 = 1.527
    assert s6 == pytest.approx(1.527, abs=1e-12)
    assert out[0, 0, 0, 0] == pytest.approx(s6, abs=1e-12)
    for t in range(6, 18):
        st_ = x[t] * w0 + x[t - 1] * w_1 + x[t - 2] * w_2 + x[t - 3] * w_3 + x[t - 4] * w_4 + x[t - 5] * w_5 + x[t - 6] * w_6
        assert out[0, 0, t - 6, 0] == pytest.approx(st_, abs=1e-12)
    # readings rise by 0.1 per step, so the average lags the newest reading by sum_k k*w-k*0.1
    lag = 0.1 * (1 * w_1 + 2 * w_2 + 3 * w_3 + 4 * w_4 + 5 * w_5 + 6 * w_6)
    np.testing.assert_allclose(out[0, 0, :, 0], x[6:] - lag, atol=1e-12)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_is_a_gemm_on_the_view(groups, bias):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5, 6))
    w = rng.standard_normal((6, 4 // groups, 1, 1))
    b = rng.standard_normal(6) if bias else None
    got = run_forward(x, w, b, (1, 1), ((0, 0), (0, 0)), (1, 1), groups, np.float64)
    np.testing.assert_allclose(got, ref_conv(x, w, b, (1, 1), ((0, 0), (0, 0)), (1, 1), groups), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("outputs", [7, 24, 40])
@pytest.mark.parametrize("activation", [NONE, RELU, TANH])
def test_pointwise_conv_on_the_register_tile(dtype, outputs, activation, monkeypatch):
    """From 256 pixels a 1x1 conv's forward and input gradient run pointwise.py's tile (the weight
    packed at each call, bias and relu on the registers, tanh after): partial, half and whole panels
    of outputs, into a channel slice of a wider buffer, the same as the reference and as BLAS's path."""
    calls = []
    monkeypatch.setattr(conv_module, "pointwise_forward", lambda *a: calls.append(1) or pointwise_forward(*a))
    rng = np.random.default_rng(outputs)
    x = rng.standard_normal((2, 5, 16, 9))  # 288 pixels
    w = rng.standard_normal((outputs, 5, 1, 1))
    b = rng.standard_normal(outputs)
    geometry = ((1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    buffer = np.full((2, 16, 9, outputs + 3), 7.0, dtype)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), b.astype(dtype), *geometry, buffer[..., 2 : 2 + outputs],
                   ConvWorkspace(), activation)
    expected = {NONE: lambda y: y, RELU: lambda y: np.maximum(y, 0), TANH: np.tanh}[activation](
        ref_conv(x, w, b, *geometry))
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nchw(buffer[..., 2 : 2 + outputs]), expected, rtol=tolerance, atol=tolerance)
    assert (buffer[..., :2] == 7).all() and (buffer[..., 2 + outputs :] == 7).all()
    dy = rng.standard_normal((2, outputs, 16, 9))
    dx, dw, db = run_backward(x, w, dy, *geometry, dtype, ConvWorkspace())
    assert len(calls) == 2  # the forward and dx, not the weight gradient
    blas = run_backward(x, w, dy, *geometry, dtype, ConvWorkspace(tile=False))
    for got, on_blas, reference in zip((dx, dw, db), blas, ref_conv_grads(x, w, dy, *geometry)):
        np.testing.assert_allclose(got, reference, rtol=tolerance, atol=tolerance * 10)
        np.testing.assert_allclose(got, on_blas, rtol=tolerance, atol=tolerance * 10)
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_columns_gemm_on_the_register_tile(dtype, monkeypatch):
    """A strided 3x3 conv over 306 output pixels: the forward's GEMM on im2col's columns runs the
    tile (bias and relu on its registers), the same as the reference and as BLAS's path."""
    calls = []
    monkeypatch.setattr(conv_module, "pointwise_forward", lambda *a: calls.append(1) or pointwise_forward(*a))
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 6, 34, 18))
    w = rng.standard_normal((20, 6, 3, 3))
    b = rng.standard_normal(20)
    geometry = ((2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    out = np.full((2, 17, 9, 20), np.nan, dtype)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), b.astype(dtype), *geometry, out, ConvWorkspace(), RELU,
                   keep=True)
    assert len(calls) == 1
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nchw(out), np.maximum(ref_conv(x, w, b, *geometry), 0), rtol=tolerance, atol=tolerance)
    on_blas = np.full_like(out, np.nan)
    conv2d_forward(nhwc(x).astype(dtype), w.astype(dtype), b.astype(dtype), *geometry, on_blas,
                   ConvWorkspace(tile=False), RELU, keep=True)
    np.testing.assert_allclose(out, on_blas, rtol=tolerance, atol=tolerance)
    assert len(calls) == 1


def test_pointwise_conv_on_the_register_tile_finite_differences():
    """The tile's input gradient (288 pixels, 3 -> 20 channels) against float64 central differences."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 16, 9))
    w = rng.standard_normal((20, 3, 1, 1))
    r = rng.standard_normal((2, 20, 16, 9))
    geometry = ((1, 1), ((0, 0), (0, 0)), (1, 1), 1)

    def loss():
        return float(np.sum(r * run_forward(x, w, None, *geometry, np.float64, ConvWorkspace())))

    dx, dw, _ = run_backward(x, w, r, *geometry, np.float64, ConvWorkspace(), bias=False)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)


def test_depthwise_and_padding_beyond_the_kernel():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 5, 4))
    w = rng.standard_normal((12, 1, 3, 3))  # groups = C: depthwise, two filters per channel
    b = rng.standard_normal(12)
    pads = ((4, 2), (0, 5))  # whole output rows/columns lie in the padding: they equal the bias
    got = run_forward(x, w, b, (2, 1), pads, (1, 2), 6, np.float64)
    np.testing.assert_allclose(got, ref_conv(x, w, b, (2, 1), pads, (1, 2), 6), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[:, :, 0, :], np.broadcast_to(b[None, :, None], got[:, :, 0, :].shape), rtol=1e-15)


def test_chunked_equals_unchunked_on_a_larger_image():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 8, 13, 11)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1, np.float32)
    whole = run_forward(x, w, b, *args, ConvWorkspace(budget=1 << 30))
    chunked = run_forward(x, w, b, *args, ConvWorkspace(budget=1, min_pixels=1))
    # the same dot products; only the GEMM's blocking (and so the rounding) may differ
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole, ref_conv(x, w, b, *args[:-1]), rtol=1e-4, atol=1e-4)


def test_rejects_a_wrong_output_shape():
    x = np.zeros((1, 5, 5, 2), np.float32)
    w = np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="output"):
        conv2d_forward(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, np.zeros((1, 5, 5, 3), np.float32))
    assert output_size(5, 3, 1, (0, 0), 1) == 3
    assert output_size(224, 7, 2, (3, 3), 1) == 112


# ------------------------------------------------------------------ backward


@SETTINGS
@given(conv_cases())
def test_backward_matches_reference_adjoint(case):
    x, w, b, stride, pads, dilation, groups, ws = case
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    dy = np.random.default_rng(x.size).standard_normal((x.shape[0], w.shape[0], oh, ow))
    dx, dw, db = run_backward(x, w, dy, stride, pads, dilation, groups, np.float64, ws, bias=b is not None)
    rdx, rdw, rdb = ref_conv_grads(x, w, dy, stride, pads, dilation, groups)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)


FD_CASES = [
    # (N, C, H, W), (O, KH, KW), stride, pads, dilation, groups
    ((2, 2, 5, 6), (3, 3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((1, 4, 7, 6), (4, 3, 2), (2, 3), ((0, 2), (1, 0)), (1, 1), 2),
    ((2, 3, 7, 7), (3, 2, 3), (1, 2), ((2, 1), (3, 1)), (2, 2), 3),
    ((1, 2, 6, 6), (2, 2, 2), (3, 3), ((0, 0), (0, 0)), (1, 1), 1),  # stride > kernel: gaps get 0
    ((2, 3, 1, 9), (2, 1, 4), (1, 2), ((0, 0), (2, 1)), (1, 2), 1),  # conv1d as H = 1
    ((2, 4, 4, 3), (6, 1, 1), (1, 1), ((0, 0), (0, 0)), (1, 1), 2),  # pointwise GEMM path
    ((1, 3, 5, 5), (4, 1, 1), (2, 2), ((1, 0), (0, 1)), (1, 1), 1),  # 1x1 with stride and padding
]


@pytest.mark.parametrize("xs, ws_, stride, pads, dilation, groups", FD_CASES)
def test_backward_matches_finite_differences(xs, ws_, stride, pads, dilation, groups):
    rng = np.random.default_rng(4)
    n, c, h, wd = xs
    o, kh, kw = ws_
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, c // groups, kh, kw))
    b = rng.standard_normal(o)
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    r = rng.standard_normal((n, o, oh, ow))  # L = sum(r * y), so dL/dy = r

    def loss():
        return float(np.sum(r * run_forward(x, w, b, stride, pads, dilation, groups, np.float64)))

    dx, dw, db = run_backward(x, w, r, stride, pads, dilation, groups, np.float64, ConvWorkspace(budget=1, min_pixels=1))
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)


def test_backward_overwrites_and_skips_what_is_not_asked():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    dy = rng.standard_normal((2, 6, 3, 3))
    args = ((2, 2), ((1, 1), (1, 1)), (1, 1), 2, np.float64)
    first = run_backward(x, w, dy, *args)
    again = run_backward(x, w, dy, *args)  # NaN-filled outputs again: every element is written
    for one, two in zip(first, again):
        np.testing.assert_array_equal(one, two)
    dx, dw, db = run_backward(x, w, dy, *args, bias=False, input_grad=False)
    assert dx is None and db is None
    np.testing.assert_array_equal(dw, first[1])
    # float32 backward agrees with float64 to float32 precision
    dx32, dw32, db32 = run_backward(x, w, dy, *args[:-1], np.float32)
    np.testing.assert_allclose(dx32, first[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw32, first[1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db32, first[2], rtol=1e-4, atol=1e-4)


def test_uncovered_input_gets_zero_gradient():
    # 2x2 windows with stride 3 never touch input rows/columns 2 and 5: their gradient is 0.
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((4, 3, 2, 2))
    dy = rng.standard_normal((2, 4, 2, 2))
    for ws in (None, ConvWorkspace(budget=1, min_pixels=1)):
        dx, _, _ = run_backward(x, w, dy, (3, 3), ((0, 0), (0, 0)), (1, 1), 1, np.float64, ws)
        assert np.all(dx[:, :, [2, 5], :] == 0) and np.all(dx[:, :, :, [2, 5]] == 0)
        assert np.all(dx[:, :, :2, :2] != 0)


# ------------------------------------------------------------------ whole-image convs, kept columns


@pytest.mark.parametrize("pads", [((0, 0), (0, 0)), ((1, 0), (0, 0))])
def test_whole_image_window_is_a_gemm_on_the_view(pads):
    # LeNet-5's c5: a 5x5 window over a 5x5 map. Unpadded it runs as one GEMM on x's (N, H*W*C)
    # view; padded it is an ordinary im2col conv. Both against the reference and by finite differences.
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 5, 5))
    w = rng.standard_normal((7, 4, 5, 5))
    b = rng.standard_normal(7)
    ws = ConvWorkspace()
    oh, ow = ref_geometry(x.shape, w.shape, (1, 1), pads, (1, 1))
    plan = ws.plan(nhwc(x), w, (1, 1), pads, (1, 1), 1, np.empty((3, oh, ow, 7)))
    assert plan.whole == (pads == ((0, 0), (0, 0)))
    got = run_forward(x, w, b, (1, 1), pads, (1, 1), 1, np.float64, ws)
    np.testing.assert_allclose(got, ref_conv(x, w, b, (1, 1), pads, (1, 1), 1), rtol=1e-12, atol=1e-12)
    r = rng.standard_normal(got.shape)

    def loss():
        return float(np.sum(r * run_forward(x, w, b, (1, 1), pads, (1, 1), 1, np.float64, ws)))

    dx, dw, db = run_backward(x, w, r, (1, 1), pads, (1, 1), 1, np.float64, ws)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)


def test_kept_columns_give_the_same_gradients_and_only_for_their_input():
    rng = np.random.default_rng(10)
    args = ((2, 1), ((1, 1), (0, 2)), (1, 1), 2)  # strided, grouped: the im2col path
    x, other = nhwc(rng.standard_normal((3, 4, 7, 6))), nhwc(rng.standard_normal((3, 4, 7, 6)))
    w = rng.standard_normal((6, 2, 3, 3))
    y = np.empty((3, 4, 6, 6))
    dy = rng.standard_normal(y.shape)
    ws = ConvWorkspace(budget=300, min_pixels=1)  # chunked: kept columns are read chunk by chunk

    def grads(inp, kept):
        dx, dw = np.empty_like(inp), np.empty_like(w)
        conv2d_backward(inp, w, dy, *args, dx, dw, None, ws, kept=kept)
        return dx, dw

    want = grads(x, kept=False)
    conv2d_forward(x, w, None, *args, y, ws, keep=True)
    assert ws.kept_for is not None
    for a, b in zip(grads(x, kept=True), want):
        np.testing.assert_array_equal(a, b)
    # columns kept for x are not used for another input (they are recomputed)
    conv2d_forward(x, w, None, *args, y, ws, keep=True)
    for a, b in zip(grads(other, kept=True), grads(other, kept=False)):
        np.testing.assert_array_equal(a, b)
    # over the keep budget nothing is kept
    ws.keep_budget = 0
    ws._plans.clear()
    conv2d_forward(x, w, None, *args, y, ws, keep=True)
    assert ws.kept_for is None
