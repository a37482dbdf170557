"""The 6 x 2L-tile register-blocked kernels (runtime/kernels/cpu/blocked_wide.py) against the plain NumPy reference
of test_kernel_conv.py (NCHW, written from the definition), and by float64 finite differences.

``ConvWorkspace(wide=True)`` sends every conv they can take (undilated, ungrouped, not 1x1 unpadded nor a window over
the whole image) through them: the forward and the weight gradient at any stride, the input gradient at stride 1 with
every padding below the kernel (the forward of dy with the turned weight), else by blocked_dx.py's kernel. The cases
cover output channels below, at and above one 2L-lane block (16 float32 lanes, 8 float64), input runs (KW * C) below
and above the weight gradient's 3L lanes (24 or 48 float32 by AVX2 or AVX-512; runs up to 4 x 17), output channels
that are no multiple of its 4 rows, rows shorter and longer than the forward's 6 pixels, stride 2, asymmetric padding
(wider than the kernel too) and fewer images than threads.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace
from gradcheck import central_difference
from test_kernel_blocked import backward, forward, plan_of
from test_kernel_conv import ref_conv, ref_conv_grads, ref_geometry

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    c, o = draw(st.integers(1, 17)), draw(st.sampled_from([1, 3, 6, 8, 9, 16, 17, 32, 33]))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(2, 4))
    s = draw(st.integers(1, 2))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 2))), (draw(st.integers(0, 2)), draw(st.integers(0, 5))))
    h = draw(st.integers(max(1, kh - sum(pads[0])), 8))
    w = draw(st.integers(max(1, kw - sum(pads[1])), 14))
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
    ws = ConvWorkspace(wide=True)
    plan = plan_of(x.shape, w.shape, stride, pads, ws)
    assume(not plan.whole)  # (a window over the whole image is one GEMM)
    assert plan.wide_forward and plan.wide_weight
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
    ws = ConvWorkspace(wide=True)
    plan = plan_of(x.shape, w.shape, stride, pads, ws)
    assume(not plan.whole)
    kh, kw = w.shape[2:]
    assert plan.wide_weight
    assert plan.wide_dx == (stride == (1, 1) and max(pads[0]) < kh and max(pads[1]) < kw) != plan.wide_dx_scatter
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    dy = np.random.default_rng(x.size).standard_normal((x.shape[0], w.shape[0], oh, ow))
    dx, dw, db = backward(x, w, dy, stride, pads, np.float64, ws)
    rdx, rdw, rdb = ref_conv_grads(x, w, dy, stride, pads, (1, 1), 1)
    np.testing.assert_allclose(dw, rdw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, rdb, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    # float32 at resnet20's first stage's channel counts is test_float32_at_resnet20s_shapes


def test_gradients_match_finite_differences():
    """One shape through every kernel: 17 output channels (a 2L block and a remainder; 4 rows of the weight
    gradient's tile and one), an input run of 2 x 3 = 6, rows of 7 pixels (a 6-pixel tile and one)."""
    rng = np.random.default_rng(7)
    xs, o, k, stride, pads = (2, 3, 5, 7), 17, (3, 2), (1, 1), ((1, 0), (1, 1))
    x = rng.standard_normal(xs)
    w = rng.standard_normal((o, xs[1], *k))
    b = rng.standard_normal(o)
    ws = ConvWorkspace(wide=True)
    plan = plan_of(x.shape, w.shape, stride, pads, ws)
    assert plan.wide_forward and plan.wide_dx and plan.wide_weight
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    r = rng.standard_normal((xs[0], o, oh, ow))  # L = sum(r * y), so dL/dy = r

    def loss():
        return float(np.sum(r * forward(x, w, b, stride, pads, np.float64, ws)))

    dx, dw, db = backward(x, w, r, stride, pads, np.float64, ws)
    np.testing.assert_allclose(dw, central_difference(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)


def test_float32_at_resnet20s_shapes():
    """resnet20's first-stage conv (16 -> 16, 3x3, pad 1), smaller: float32 forward and gradients within float32
    rounding of the float64 results on the same rounded inputs."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    stride, pads = (1, 1), ((1, 1), (1, 1))
    ws = ConvWorkspace(wide=True)
    dy = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    y = forward(x, w, None, stride, pads, np.float32, ws)
    dx, dw, _ = backward(x, w, dy, stride, pads, np.float32, ws, bias=False)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    ax, aw, ady = np.abs(x64), np.abs(w64), np.abs(dy64)
    rdx, rdw, _ = ref_conv_grads(x64, w64, dy64, stride, pads, (1, 1), 1)
    sdx, sdw, _ = ref_conv_grads(ax, aw, ady, stride, pads, (1, 1), 1)
    assert np.all(np.abs(y - ref_conv(x64, w64, None, stride, pads, (1, 1), 1))
                  <= 1e-5 * ref_conv(ax, aw, None, stride, pads, (1, 1), 1))
    assert np.all(np.abs(dx - rdx) <= 1e-5 * sdx)
    assert np.all(np.abs(dw - rdw) <= 1e-5 * sdw)


def test_the_rule_takes_resnet20s_convs():
    """Default workspaces: resnet20's 16-channel 3x3 convs (forward, dx, dW), its stride-2 convs (forward, dW, and at
    16 -> 32 channels dx by blocked_dx.py's kernel), the weight gradient of its 32- and 64-channel ones (their forward
    and dx: Winograd's, WIDE_WINOGRAD_MIN_C); not ResNet-18's
    (wider, or 64 channels on a 32x32 image), LeNet-5's, nor where a workspace forces another kernel."""

    def plan(h, c, o, stride=1, ws=None):
        return plan_of((2, c, h, h), (o, c, 3, 3), (stride, stride), ((1, 1), (1, 1)), ws or ConvWorkspace())

    def paths(p):
        return p.wide_forward, p.wide_dx, p.wide_weight, p.wide_dx_scatter

    assert paths(plan(32, 16, 16)) == (True, True, True, False)
    assert paths(plan(16, 32, 32)) == (False, False, True, False)
    assert paths(plan(16, 32, 32, ws=ConvWorkspace(wide=True))) == (True, True, True, False)
    assert paths(plan(8, 64, 64)) == (False, False, True, False)
    assert paths(plan(32, 16, 32, stride=2)) == (True, False, True, True)  # dx by blocked_dx.py's kernel
    assert paths(plan(16, 32, 64, stride=2)) == (True, False, True, False)
    for p in (plan(32, 64, 64), plan(16, 128, 128), plan(32, 6, 16), plan(32, 16, 16, ws=ConvWorkspace(
            winograd=True)), plan(32, 16, 16, ws=ConvWorkspace(direct=False)), plan(32, 16, 16, ws=ConvWorkspace(wide=False))):
        assert paths(p) == (False, False, False, False)
    shortcut = plan_of((2, 16, 32, 32), (32, 16, 1, 1), (2, 2), ((0, 0), (0, 0)), ConvWorkspace())
    assert paths(shortcut) == (False, False, False, False)
    lenet_c3 = plan_of((64, 6, 14, 14), (16, 6, 5, 5), (1, 1), ((0, 0), (0, 0)), ConvWorkspace())
    assert not lenet_c3.wide_forward and lenet_c3.blocked


def test_weight_gradient_in_row_chunks():
    """Where a pixel's run starts 128 bytes or more after the previous one's, the weight gradient sums rows of at
    least 96 output pixels at a time: 16 float64 channels, rows of 9 pixels (chunks of 11 rows and one of 1, 5
    output channels: a 4-row tile and one), against finite differences; float32 at stride 2 (chunks of 14 and 6
    rows) within float32 rounding of the float64 result."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 16, 12, 9))
    w = rng.standard_normal((5, 16, 3, 3))
    stride, pads = (1, 1), ((1, 1), (1, 1))
    ws = ConvWorkspace(wide=True)
    assert plan_of(x.shape, w.shape, stride, pads, ws).wide_weight
    r = rng.standard_normal((1, 5, 12, 9))
    _, dw, _ = backward(x, w, r, stride, pads, np.float64, ws, bias=False)
    np.testing.assert_allclose(dw, ref_conv_grads(x, w, r, stride, pads, (1, 1), 1)[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        dw, central_difference(lambda: float(np.sum(r * forward(x, w, None, stride, pads, np.float64, ws))), w),
        rtol=1e-6, atol=1e-8)

    x32 = rng.standard_normal((2, 16, 40, 14)).astype(np.float32)
    w32 = rng.standard_normal((9, 16, 3, 3)).astype(np.float32)
    stride = (2, 2)
    oh, ow = ref_geometry(x32.shape, w32.shape, stride, pads, (1, 1))
    assert (oh, ow) == (20, 7)
    dy = rng.standard_normal((2, 9, oh, ow)).astype(np.float32)
    _, dw32, _ = backward(x32, w32, dy, stride, pads, np.float32, ws, bias=False)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x32, w32, dy))
    rdw = ref_conv_grads(x64, w64, dy64, stride, pads, (1, 1), 1)[1]
    sdw = ref_conv_grads(np.abs(x64), np.abs(w64), np.abs(dy64), stride, pads, (1, 1), 1)[1]
    assert np.all(np.abs(dw32 - rdw) <= 1e-5 * sdw)
