"""Pooling kernels (runtime/kernels/cpu/pool.py) against plain NumPy loops in N x C x H x W.

The references below are written from the definitions, not from the kernels: the output size
from the floor/ceil formula (PyTorch's ceil rule: drop a last window that starts at or past
W + P), max pooling as a first-maximum search over the real positions of each window, and
average pooling's divisor as a count of window positions — inside the padded input [-P, W + P)
with count_pad, inside the real input [0, W) without. Gradients: float64 central differences.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.pool import (
    _avgpool_backward,
    avgpool_backward,
    avgpool_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    maxpool_backward,
    maxpool_forward,
    PIXELWISE_CHANNELS,
    maxpool_values,
)
from gradcheck import stacked_central_difference

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def out_size(w: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = w + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= w + p:
        out -= 1
    return out


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def ref_maxpool(x, k, s, p, d, ceil):
    """Max and flat arg-max (h*W + w) per output, N x C x OH x OW; -inf and -1 for a window
    that holds no input (possible with dilation: 1 input, kernel 2, dilation 2, pad 1)."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.zeros((n, c, oh, ow), x.dtype)
    arg = np.zeros((n, c, oh, ow), np.int64)
    for b, ch, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        best, where = -np.inf, -1
        for a, e in itertools.product(range(k[0]), range(k[1])):
            y, z = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + e * d[1]
            if 0 <= y < h and 0 <= z < w and (where < 0 or x[b, ch, y, z] > best):
                best, where = x[b, ch, y, z], y * w + z
        out[b, ch, i, j], arg[b, ch, i, j] = best, where
    return out, arg


def ref_avgpool(x, k, s, p, ceil, count_pad):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.zeros((n, c, oh, ow), x.dtype)
    for i, j in itertools.product(range(oh), range(ow)):
        total, counted = np.zeros((n, c)), 0
        for a, e in itertools.product(range(k[0]), range(k[1])):
            y, z = i * s[0] - p[0] + a, j * s[1] - p[1] + e
            real = 0 <= y < h and 0 <= z < w
            if real:
                total += x[:, :, y, z]
            if real or (count_pad and -p[0] <= y < h + p[0] and -p[1] <= z < w + p[1]):
                counted += 1
        out[:, :, i, j] = total / counted
    return out


def run_maxpool(x_nchw, k, s, p, d, ceil):
    x = nhwc(x_nchw)
    n, h, w, c = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.empty((n, oh, ow, c), x.dtype)
    arg = np.empty((n, oh, ow, c), np.int32)
    maxpool_forward(x, out, arg, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    return out, arg


def run_avgpool(x_nchw, k, s, p, ceil, count_pad):
    x = nhwc(x_nchw)
    n, h, w, c = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.empty((n, oh, ow, c), x.dtype)
    avgpool_forward(x, out, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    return out


def stacked(run, weights):
    """B x N x C x H x W → the B weighted sums of the outputs of ``run`` (N x C x H x W → NHWC)."""

    def losses(stack):
        out = run(stack.reshape(-1, *stack.shape[2:]))
        return (out.reshape(len(stack), *weights.shape) * weights).sum(axis=(1, 2, 3, 4))

    return losses


@st.composite
def geometry(draw, dilation=True, disjoint=False):
    """Image size, kernel, stride, padding (at most half the kernel), dilation, ceil mode; with
    ``disjoint``, stride >= kernel on both axes, drawn so rather than filtered (an assume() that
    threw away three draws in four tripped hypothesis's filter_too_much health check)."""
    axes = []
    for _ in range(2):
        k = draw(st.integers(1, 3 if disjoint else 4))
        axes.append((draw(st.integers(1, 9)), k, draw(st.integers(k if disjoint else 1, 3)),
                     draw(st.integers(0, k // 2)), draw(st.integers(1, 2)) if dilation else 1))  # fmt: skip
    ceil = draw(st.booleans())
    sizes, k, s, p, d = (tuple(a[i] for a in axes) for i in range(5))
    for size, kk, ss, pp, dd in axes:
        assume(out_size(size, kk, ss, pp, dd, ceil) >= 1)
    return sizes, k, s, p, d, ceil


# ---- max pooling -----------------------------------------------------------------------


@SETTINGS
@given(geometry(), st.integers(1, 3), st.integers(1, 4), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_maxpool_forward_matches_reference(geo, n, c, dtype, seed):
    (h, w), k, s, p, d, ceil = geo
    # Values on a coarse grid, so that windows often hold ties: the first maximum must win.
    x = np.random.default_rng(seed).integers(-3, 4, (n, c, h, w)).astype(dtype)
    out, arg = run_maxpool(x, k, s, p, d, ceil)
    ref, ref_arg = ref_maxpool(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(nchw(out), ref)
    np.testing.assert_array_equal(nchw(arg), ref_arg)


@SETTINGS
@given(geometry(), st.integers(1, 2), st.integers(1, 3), st.integers(0, 99))
def test_maxpool_backward_finite_differences(geo, n, c, seed):
    (h, w), k, s, p, d, ceil = geo
    rng = np.random.default_rng(seed)
    # Distinct values 0.1 apart: no ties, so the max is differentiable for steps of 1e-6.
    x = (rng.permutation(n * c * h * w).reshape(n, c, h, w) * 0.1).astype(np.float64)
    out, arg = run_maxpool(x, k, s, p, d, ceil)
    assume(np.isfinite(out).all())  # an empty window's -inf has no derivative
    weights = rng.standard_normal(out.shape)
    dx = np.empty((n, h, w, c))
    maxpool_backward(weights, arg, dx)
    numeric = stacked_central_difference(stacked(lambda v: run_maxpool(v, k, s, p, d, ceil)[0], weights), x)
    np.testing.assert_allclose(nchw(dx), numeric, atol=1e-6)


def test_maxpool_ties_route_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2))
    out, arg = run_maxpool(x, (2, 2), (2, 2), (0, 0), (1, 1), False)
    assert arg.ravel().tolist() == [0]
    dx = np.empty((1, 2, 2, 1))
    maxpool_backward(np.full(out.shape, 5.0), arg, dx)
    assert dx.ravel().tolist() == [5.0, 0.0, 0.0, 0.0]


def test_maxpool_padding_never_wins_over_negative_values():
    x = -np.arange(1.0, 10.0).reshape(1, 1, 3, 3)  # all negative: a zero pad would win
    out, arg = run_maxpool(x, (3, 3), (2, 2), (1, 1), (1, 1), False)
    assert nchw(out).ravel().tolist() == [-1.0, -2.0, -4.0, -5.0]
    assert arg.ravel().tolist() == [0, 1, 3, 4]


def test_maxpool_window_without_input_gives_minus_infinity_and_no_gradient():
    # Width 1, kernel 2, dilation 2, pad 1: the one window looks at -1 and 1, both outside.
    x = np.ones((1, 1, 1, 1))
    out, arg = run_maxpool(x, (1, 2), (1, 1), (0, 1), (1, 2), False)
    assert out.ravel().tolist() == [-np.inf] and arg.ravel().tolist() == [-1]
    dx = np.empty((1, 1, 1, 1))
    maxpool_backward(np.ones(out.shape), arg, dx)
    assert dx.ravel().tolist() == [0.0]


def test_maxpool_nan_propagates():
    x = np.array([1.0, np.nan, 3.0, 2.0]).reshape(1, 1, 1, 4)
    out, arg = run_maxpool(x, (1, 2), (1, 2), (0, 0), (1, 1), False)
    assert np.isnan(out[0, 0, 0, 0]) and out[0, 0, 1, 0] == 3.0
    assert arg.ravel().tolist() == [1, 2]


@SETTINGS
@given(geometry(), st.integers(1, 3), st.integers(1, 4), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_maxpool_values_match_reference(geo, n, c, dtype, seed):
    (h, w), k, s, p, d, ceil = geo
    rng = np.random.default_rng(seed)
    # A coarse grid with signed zeros and NaNs: the first maximum (in row-major window order)
    # and the first NaN must win, as in maxpool_forward, which the reference checks bit for bit.
    x = rng.choice(np.array([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, np.nan]), (n, c, h, w)).astype(dtype)
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.full((n, oh, ow, c), 7.0, dtype)
    maxpool_values(nhwc(x), out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    ref, _ = ref_maxpool(np.nan_to_num(x, nan=9.0), k, s, p, d, ceil)  # NaN ranks above all
    ref[ref == 9.0] = np.nan
    np.testing.assert_array_equal(nchw(out), ref)
    with_argmax, _ = run_maxpool(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(with_argmax))
    np.testing.assert_array_equal(out, with_argmax)


@pytest.mark.parametrize("k, s, p, d, ceil", [((3, 3), (2, 2), (1, 1), (1, 1), True), ((2, 3), (3, 2), (0, 1), (2, 1), False)])
def test_maxpool_values_per_pixel_path_matches_reference(k, s, p, d, ceil):
    # PIXELWISE_CHANNELS or more channels with a stride > 1: the per-pixel loops (the property
    # test above draws fewer channels, so it reaches the every-column path)
    rng = np.random.default_rng(5)
    channels = PIXELWISE_CHANNELS + 1
    x = rng.choice(np.array([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, np.nan]), (2, channels, 9, 8)).astype(np.float32)
    oh, ow = out_size(9, k[0], s[0], p[0], d[0], ceil), out_size(8, k[1], s[1], p[1], d[1], ceil)
    out = np.full((2, oh, ow, channels), 7.0, np.float32)
    maxpool_values(nhwc(x), out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    ref, _ = ref_maxpool(np.nan_to_num(x, nan=9.0), k, s, p, d, ceil)
    ref[ref == 9.0] = np.nan
    np.testing.assert_array_equal(nchw(out), ref)
    with_argmax, _ = run_maxpool(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(with_argmax))


def test_maxpool_values_signed_zero_is_the_first_in_row_major_order():
    # Columns first would take +0 (column 0's maximum); row-major order meets -0 first.
    x = np.array([[-1.0, -0.0], [0.0, -1.0]]).reshape(1, 1, 2, 2)
    out = np.empty((1, 1, 1, 1))
    maxpool_values(nhwc(x), out, 2, 2, 2, 2, 0, 0, 1, 1)
    assert out.ravel()[0] == 0 and np.signbit(out.ravel()[0])


# ---- average pooling -------------------------------------------------------------------


@SETTINGS
@given(geometry(dilation=False), st.integers(1, 3), st.integers(1, 4), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 99))  # fmt: skip
def test_avgpool_forward_matches_reference(geo, n, c, count_pad, dtype, seed):
    (h, w), k, s, p, _, ceil = geo
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    out = run_avgpool(x, k, s, p, ceil, count_pad)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(nchw(out), ref_avgpool(x, k, s, p, ceil, count_pad), rtol=tol, atol=tol)


@SETTINGS
@given(geometry(dilation=False), st.integers(1, 2), st.integers(1, 3), st.booleans(), st.integers(0, 99))
def test_avgpool_backward_finite_differences(geo, n, c, count_pad, seed):
    (h, w), k, s, p, _, ceil = geo
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    out = run_avgpool(x, k, s, p, ceil, count_pad)
    weights = rng.standard_normal(out.shape)
    dx = np.empty((n, h, w, c))
    avgpool_backward(weights, dx, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    numeric = stacked_central_difference(stacked(lambda v: run_avgpool(v, k, s, p, ceil, count_pad), weights), x)
    np.testing.assert_allclose(nchw(dx), numeric, atol=1e-7)


@SETTINGS
@given(geometry(dilation=False, disjoint=True), st.integers(1, 3), st.integers(1, 7), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 99))  # fmt: skip
def test_avgpool_backward_disjoint_windows_match_the_reference(geo, n, c, count_pad, dtype, seed):
    """Windows that do not overlap take the row-gather kernel: the adjoint of ref_avgpool (each
    input's share of its window's dy), and the general kernel's values bit for bit."""
    (h, w), k, s, p, _, ceil = geo
    assert s[0] >= k[0] and s[1] >= k[1]
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    dy = np.random.default_rng(seed).standard_normal((n, c, oh, ow)).astype(dtype)
    dx = np.full((n, h, w, c), np.nan, dtype)
    avgpool_backward(nhwc(dy), dx, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    # the adjoint: <ref_avgpool(e), dy> for each unit input e, one input position at a time
    want = np.zeros((n, c, h, w))
    for y, z in itertools.product(range(h), range(w)):
        unit = np.zeros((1, 1, h, w))
        unit[0, 0, y, z] = 1
        want[:, :, y, z] = np.einsum("ncij,ij->nc", dy.astype(np.float64), ref_avgpool(unit, k, s, p, ceil, count_pad)[0, 0])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(nchw(dx), want, rtol=tol, atol=tol)
    general = np.full_like(dx, np.nan)
    _avgpool_backward(nhwc(dy), general, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    np.testing.assert_array_equal(dx, general)


@pytest.mark.parametrize(
    "count_pad, expected",
    [
        # Windows over [1..6] padded by 1 on each side, width 3, stride 2, ceil: the starts are
        # -1, 1, 3, 5. The last window [5, 8) holds the real 6, the padding at 6 and one place
        # beyond the padding, which is never counted: divisor 2 with count_pad, 1 without.
        (True, [3 / 3, 9 / 3, 15 / 3, 6 / 2]),
        (False, [3 / 2, 9 / 3, 15 / 3, 6 / 1]),
    ],
)
def test_avgpool_count_pad_and_ceil_by_hand(count_pad, expected):
    x = np.arange(1.0, 7.0).reshape(1, 1, 1, 6)
    out = run_avgpool(x, (1, 3), (1, 2), (0, 1), True, count_pad)
    np.testing.assert_allclose(out.ravel(), expected)
    # Floor mode drops the last window.
    out = run_avgpool(x, (1, 3), (1, 2), (0, 1), False, count_pad)
    np.testing.assert_allclose(out.ravel(), expected[:3])


def test_avgpool_2d_by_hand():
    # 3x3 image, 2x2 windows, stride 2, pad 1: every window holds one, two or four real values.
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    with_pad = run_avgpool(x, (2, 2), (2, 2), (1, 1), False, True)
    without = run_avgpool(x, (2, 2), (2, 2), (1, 1), False, False)
    np.testing.assert_allclose(nchw(with_pad)[0, 0], [[1 / 4, (2 + 3) / 4], [(4 + 7) / 4, (5 + 6 + 8 + 9) / 4]])
    np.testing.assert_allclose(nchw(without)[0, 0], [[1, (2 + 3) / 2], [(4 + 7) / 2, (5 + 6 + 8 + 9) / 4]])


# ---- global average pooling ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_avgpool_forward_and_backward(dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 5, 2)).astype(dtype)
    out = np.empty((3, 1, 1, 2), dtype)
    global_avgpool_forward(x, out)
    np.testing.assert_allclose(out[:, 0, 0], x.astype(np.float64).mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    dy = rng.standard_normal(out.shape).astype(dtype)
    dx = np.empty_like(x)
    global_avgpool_backward(dy, dx)
    np.testing.assert_allclose(dx, np.broadcast_to(dy / 20, x.shape), rtol=1e-6)


def test_avgpool_takes_channel_slices():
    # A channel slice of a concat's buffer (input, or a gradient split by a concat) gives the
    # same result as its contiguous copy
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((2, 6, 6, 5)).astype(np.float32)
    x = wide[..., 1:4]
    out, want = np.empty((2, 3, 3, 3), np.float32), np.empty((2, 3, 3, 3), np.float32)
    avgpool_forward(x, out, 2, 2, 2, 2, 0, 0, False)
    avgpool_forward(np.ascontiguousarray(x), want, 2, 2, 2, 2, 0, 0, False)
    np.testing.assert_array_equal(out, want)
    dy_wide = rng.standard_normal((2, 3, 3, 5)).astype(np.float32)
    dx, dx_want = np.empty((2, 6, 6, 3), np.float32), np.empty((2, 6, 6, 3), np.float32)
    avgpool_backward(dy_wide[..., 2:5], dx, 2, 2, 2, 2, 0, 0, False)
    avgpool_backward(np.ascontiguousarray(dy_wide[..., 2:5]), dx_want, 2, 2, 2, 2, 0, 0, False)
    np.testing.assert_array_equal(dx, dx_want)
