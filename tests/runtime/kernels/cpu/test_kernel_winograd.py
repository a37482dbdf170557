"""Winograd convolution (runtime/kernels/cpu/winograd.py) against a plain NumPy direct convolution.

The reference is the definition in channels last: zero-pad explicitly, then sum the nine taps'
shifted slices times the tap's weights, in float64. float64 Winograd must agree to rounding
(relative 1e-12 of the output scale). For float32 see FLOAT32_* below.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward
from cnnlang.runtime.kernels.cpu.epilogue import NONE, RELU, SIGMOID, TANH
from cnnlang.runtime.kernels.cpu.pointwise import panel_width, stacked_panels
from cnnlang.runtime.kernels.cpu.winograd import (
    matrices, padded_u_size, transform_weight, transform_weight_into, transform_weight_panels_into, winograd_forward,
)

ACTIVATIONS = {NONE: lambda y: y, RELU: lambda y: np.maximum(y, 0), TANH: np.tanh, SIGMOID: lambda y: 1 / (1 + np.exp(-y))}

# float32. Direct convolution's float32 error, relative to the output scale, grows like u*sqrt(K)
# for K = 9*Cin random terms (u = 6e-8). F(2x2, 3x3)'s transforms have coefficients 0, +-1, +-1/2
# (row sums of at most 2 in B^T, 1.5 in G, 3 in A^T): each adds a few roundings of short sums, so
# its error is a small multiple of the direct one (Lavin and Gray 2016; Barabasz et al. 2020).
# Measured on the shapes below and ResNet-50's (64 to 512 channels): F(2x2) 2.4e-7 to 5.4e-7,
# 0.6x to 1.6x im2col's 3.0e-7 to 5.8e-7 on the same float32 inputs. F(4x4)'s matrices hold 4, 5
# and 8: it measured 3.7e-6 to 1.1e-5, 10x to 30x im2col's, which is why the kernel (and this file)
# no longer has it. The bounds: 3x im2col's own error (measured at most 1.6x), and an absolute
# bound of about 4x the largest measured value on these shapes.
FLOAT32_TOLERANCE = 2e-6
FLOAT32_RATIO_TO_DIRECT = 3.0
FLOAT64_TOLERANCE = 1e-12


def reference(x, w, b, pads, kind):
    """x (N, H, W, C), w (O, C, 3, 3), pads ((top, bottom), (left, right)) -> (N, Ho, Wo, O), float64."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (pt, pb), (pl, pr) = pads
    n, h, wd, c = x.shape
    padded = np.zeros((n, h + pt + pb, wd + pl + pr, c))
    padded[:, pt : pt + h, pl : pl + wd] = x
    ho, wo = h + pt + pb - 2, wd + pl + pr - 2
    y = np.zeros((n, ho, wo, w.shape[0]))
    for kh in range(3):
        for kw in range(3):
            y += np.einsum("nhwc,oc->nhwo", padded[:, kh : kh + ho, kw : kw + wo], w[:, :, kh, kw])
    if b is not None:
        y += b
    return ACTIVATIONS[kind](y)


def run(x, w, b, pads, kind, out=None):
    n, h, wd, _ = x.shape
    (pt, pb), (pl, pr) = pads
    if out is None:
        out = np.empty((n, h + pt + pb - 2, wd + pl + pr - 2, w.shape[0]), x.dtype)
    return winograd_forward(x, transform_weight(w, x.dtype), b, pads, out, ConvWorkspace(), kind)


def relative_error(actual, expected) -> float:
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


CASES = [
    # (N, H, W, Cin, Cout, pads)
    (1, 4, 4, 1, 1, ((0, 0), (0, 0))),
    (2, 5, 7, 3, 4, ((1, 1), (1, 1))),  # odd outputs: partial edge tiles
    (1, 8, 8, 5, 6, ((1, 1), (1, 1))),
    (2, 9, 6, 4, 3, ((0, 2), (2, 0))),  # asymmetric padding
    (1, 3, 3, 2, 2, ((0, 0), (0, 0))),  # a 1x1 output
    (1, 1, 1, 3, 2, ((1, 1), (1, 1))),  # the whole input is one pixel
    (3, 11, 13, 7, 9, ((2, 1), (0, 3))),
    (2, 6, 6, 8, 16, ((1, 1), (1, 1))),  # whole panels both ways: training packs U in place (stacked_panels_into)
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", [NONE, RELU, TANH, SIGMOID])
def test_float64_matches_direct_convolution(case, kind):
    n, h, w, cin, cout, pads = case
    rng = np.random.default_rng(hash((case[:5], kind, 2)) % 2**32)  # 2: the tile size, kept so the data is unchanged
    x, weight = rng.standard_normal((n, h, w, cin)), rng.standard_normal((cout, cin, 3, 3))
    bias = rng.standard_normal(cout) if kind != TANH else None
    assert relative_error(run(x, weight, bias, pads, kind), reference(x, weight, bias, pads, kind)) < FLOAT64_TOLERANCE


def test_chunks_and_tile_rows_across_images(monkeypatch):
    """Chunks of a few tile rows, which split images and end mid-image, give the same result."""
    import cnnlang.runtime.kernels.cpu.winograd as winograd

    monkeypatch.setattr(winograd, "MIN_CHUNK_TILES", 1)
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal((3, 9, 7, 4)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    pads = ((1, 1), (1, 1))
    out = np.empty((3, 9, 7, 5))
    u = transform_weight(weight)
    per_row = u.shape[0] * -(-7 // 2) * (4 + 5) * 8
    winograd_forward(x, u, bias, pads, out, ConvWorkspace(budget=2 * per_row + 1), RELU)  # 2 tile rows per chunk
    assert relative_error(out, reference(x, weight, bias, pads, RELU)) < FLOAT64_TOLERANCE


def test_writes_a_channel_slice_of_a_concat_buffer():
    rng = np.random.default_rng(2)
    x, weight, bias = rng.standard_normal((2, 7, 5, 3)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    pads = ((1, 1), (1, 1))
    buffer = np.full((2, 7, 5, 10), 7.0)
    run(x, weight, bias, pads, RELU, out=buffer[..., 3:7])
    assert relative_error(buffer[..., 3:7], reference(x, weight, bias, pads, RELU)) < FLOAT64_TOLERANCE
    assert np.all(buffer[..., :3] == 7.0) and np.all(buffer[..., 7:] == 7.0)


@pytest.mark.parametrize("shape", [(2, 14, 14, 64), (1, 15, 9, 96), (1, 7, 7, 256)])
def test_float32_error_is_a_small_multiple_of_direct(shape):
    n, h, w, cin = shape
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = (rng.standard_normal((48, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    pads = ((1, 1), (1, 1))
    expected = reference(x, weight, bias, pads, NONE)
    error = relative_error(run(x, weight, bias, pads, NONE), expected)
    direct = np.empty(expected.shape, np.float32)
    conv2d_forward(x, weight, bias, (1, 1), pads, (1, 1), 1, direct, ConvWorkspace(), NONE)
    direct_error = relative_error(direct, expected)
    assert error < FLOAT32_TOLERANCE, (error, direct_error)
    assert error < FLOAT32_RATIO_TO_DIRECT * direct_error, (error, direct_error)


def test_transform_weight_is_g_g_gt_per_channel_pair():
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((3, 2, 3, 3))
    _, g, _ = matrices()
    u = transform_weight(weight)
    assert u.shape == (16, 2, 3) and u.dtype == np.float64
    np.testing.assert_allclose(u[:, 1, 2].reshape(4, 4), g @ weight[2, 1] @ g.T, rtol=1e-14)
    assert transform_weight(weight.astype(np.float32)).dtype == np.float32


def test_rejects_mismatched_shapes_and_dtypes():
    x = np.zeros((1, 5, 5, 2), np.float32)
    u = transform_weight(np.zeros((3, 2, 3, 3), np.float32))
    with pytest.raises(ValueError):
        winograd_forward(x, u, None, ((1, 1), (1, 1)), np.empty((1, 4, 5, 3), np.float32))
    f4x4 = np.zeros((36, 2, 3), np.float32)  # an F(4x4) weight: the kernel no longer computes one
    with pytest.raises(ValueError):
        winograd_forward(x, f4x4, None, ((1, 1), (1, 1)), np.empty((1, 5, 5, 3), np.float32))
    with pytest.raises(TypeError):
        winograd_forward(x, u.astype(np.float64), None, ((1, 1), (1, 1)), np.empty((1, 5, 5, 3), np.float32))


# --------------------------------------------------------------------------- training (conv.py's Winograd paths)
# ConvWorkspace(winograd=True) sends every conv the paths can take (3x3, stride 1, undilated, ungrouped, padding at
# most 2) through Winograd: the forward (transform_weight_into's U), the input gradient (a Winograd conv of dy with
# the turned, transposed weight) and the weight gradient (winograd_weight_grad).


def reference_grads(x, w, dy, pads):
    """(dx, dw, db) of reference's convolution for upstream dy (N, Ho, Wo, O), float64: the adjoint of its loops."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    (pt, pb), (pl, pr) = pads
    n, h, wd, c = x.shape
    padded = np.zeros((n, h + pt + pb, wd + pl + pr, c))
    padded[:, pt : pt + h, pl : pl + wd] = x
    dpadded = np.zeros_like(padded)
    ho, wo = dy.shape[1:3]
    dw = np.zeros(w.shape)
    for kh in range(3):
        for kw in range(3):
            dw[:, :, kh, kw] = np.einsum("nhwc,nhwo->oc", padded[:, kh : kh + ho, kw : kw + wo], dy)
            dpadded[:, kh : kh + ho, kw : kw + wo] += np.einsum("nhwo,oc->nhwc", dy, w[:, :, kh, kw])
    return dpadded[:, pt : pt + h, pl : pl + wd], dw, dy.sum(axis=(0, 1, 2))


def train_step(x, weight, bias, dy, pads, ws):
    """conv2d_forward (keep=True, as in training) and conv2d_backward on ``ws``: (y, dx, dw, db)."""
    n, h, w, _ = x.shape
    (pt, pb), (pl, pr) = pads
    y = np.full((n, h + pt + pb - 2, w + pl + pr - 2, weight.shape[0]), np.nan, x.dtype)
    dx, dw, db = np.full(x.shape, np.nan, x.dtype), np.full(weight.shape, np.nan, x.dtype), np.full(weight.shape[0], np.nan, x.dtype)
    conv2d_forward(x, weight, bias, (1, 1), pads, (1, 1), 1, y, ws, keep=True)
    conv2d_backward(x, weight, dy, (1, 1), pads, (1, 1), 1, dx, dw, db, ws, kept=True)
    return y, dx, dw, db


@pytest.mark.parametrize("case", CASES)
def test_training_paths_float64_match_reference(case, monkeypatch):
    import cnnlang.runtime.kernels.cpu.winograd as winograd

    monkeypatch.setattr(winograd, "MIN_CHUNK_TILES", 1)  # with the small budget: chunks of a tile row or two
    n, h, w, cin, cout, pads = case
    rng = np.random.default_rng(hash(case[:5]) % 2**32)
    x, weight, bias = rng.standard_normal((n, h, w, cin)), rng.standard_normal((cout, cin, 3, 3)), rng.standard_normal(cout)
    ws = ConvWorkspace(winograd=True, budget=16 * 2 * (cin + cout) * 8 + 1)
    y0 = np.empty((n, h + sum(pads[0]) - 2, w + sum(pads[1]) - 2, cout))
    plan = ws.plan(x, weight, (1, 1), pads, (1, 1), 1, y0)
    # the case with a padding of 3 is left to im2col (dx's conv would need a negative padding)
    assert plan.winograd_forward == plan.winograd_dx == plan.winograd_weight == (max(max(p) for p in pads) <= 2)
    dy = rng.standard_normal(y0.shape)
    y, dx, dw, db = train_step(x, weight, bias, dy, pads, ws)
    rdx, rdw, rdb = reference_grads(x, weight, dy, pads)
    assert relative_error(y, reference(x, weight, bias, pads, NONE)) < FLOAT64_TOLERANCE
    assert relative_error(dx, rdx) < FLOAT64_TOLERANCE
    assert relative_error(dw, rdw) < FLOAT64_TOLERANCE
    assert relative_error(db, rdb) < FLOAT64_TOLERANCE


@pytest.mark.parametrize("pads", [((1, 1), (1, 1)), ((0, 2), (2, 0))])
@pytest.mark.parametrize("channels", [(3, 4), (8, 16)])  # (8, 16): whole float64 panels both ways (no U written)
def test_training_gradients_match_finite_differences(pads, channels):
    from gradcheck import central_difference

    cin, cout = channels
    rng = np.random.default_rng(6)
    x, weight = rng.standard_normal((2, 5, 6, cin)), rng.standard_normal((cout, cin, 3, 3))
    if cin > 3:  # He-scaled, so that the loss stays O(10) and the differences' rounding (|L| u / eps) below 1e-9
        weight *= np.sqrt(2 / (9 * cin))
    bias = rng.standard_normal(cout)
    ho, wo = 5 + sum(pads[0]) - 2, 6 + sum(pads[1]) - 2
    r = rng.standard_normal((2, ho, wo, cout))  # L = sum(r * y), so dL/dy = r
    ws = ConvWorkspace(winograd=True)

    def loss():
        return float(np.sum(r * train_step(x, weight, bias, r, pads, ws)[0]))

    _, dx, dw, db = train_step(x, weight, bias, r, pads, ws)
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, central_difference(loss, weight), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, bias), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("shape", [(4, 16, 16, 32), (2, 9, 11, 64), (8, 4, 4, 64)])  # (the rule's smallest maps: 4x4)
def test_training_float32_error_is_a_small_multiple_of_im2col(shape):
    """The forward, dx and dW of the Winograd training paths within FLOAT32_TOLERANCE and FLOAT32_RATIO_TO_DIRECT
    of im2col's own float32 error (each against float64 arithmetic on the same float32 inputs)."""
    n, h, w, cin = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = (rng.standard_normal((48, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    dy = rng.standard_normal((n, h, w, 48)).astype(np.float32)
    pads = ((1, 1), (1, 1))
    expected = (reference(x, weight, bias, pads, NONE), *reference_grads(x, weight, dy, pads)[:2])
    got = train_step(x, weight, bias, dy, pads, ConvWorkspace(winograd=True))[:3]
    im2col = train_step(x, weight, bias, dy, pads, ConvWorkspace(winograd=False, direct=False))[:3]
    for name, a, b, want in zip(("y", "dx", "dw"), got, im2col, expected):
        assert a.dtype == np.float32
        error, direct_error = relative_error(a, want), relative_error(b, want)
        assert error < FLOAT32_TOLERANCE, (name, error, direct_error)
        assert error < FLOAT32_RATIO_TO_DIRECT * direct_error, (name, error, direct_error)


def reference_u(weight: np.ndarray) -> np.ndarray:
    """U = G g G^T per channel pair, (16, Cin, Cout), by an einsum in float64."""
    _, g, _ = matrices()
    u = np.einsum("ik,ockl,jl->ijco", g, np.asarray(weight, np.float64), g)
    return u.reshape(16, weight.shape[1], weight.shape[0])


def test_transform_weight_into_matches_the_reference_turned_and_not():
    rng = np.random.default_rng(8)
    weight = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    # computed in float64 and rounded once: the float32 reference's rounding exactly
    np.testing.assert_array_equal(transform_weight_into(weight, np.empty(16 * 15, np.float32)),
                                  reference_u(weight).astype(np.float32))  # fmt: skip
    np.testing.assert_array_equal(transform_weight(weight), reference_u(weight).astype(np.float32))
    turned = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    np.testing.assert_array_equal(transform_weight_into(weight, np.empty(16 * 15, np.float32), flip=True),
                                  reference_u(turned).astype(np.float32))
    # padded: the same planes, each padded_u_size / 16 elements from the last, the gaps untouched
    for flip, want in ((False, reference_u(weight)), (True, reference_u(turned))):
        out = np.full(padded_u_size(weight.size), np.inf, np.float32)
        u = transform_weight_into(weight, out, flip=flip, padded=True)
        np.testing.assert_array_equal(u, want.reshape(u.shape).astype(np.float32))
        assert u.strides[0] == out.size // 16 * 4 > 15 * 4
        assert np.isinf(out.reshape(16, -1)[:, 15:]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("flip", [False, True])
def test_transform_weight_panels_into_is_the_packed_reference(dtype, flip):
    """The fused transform + pack equals pointwise.stacked_panels of the float64 reference U (rounded once to
    float32: exactly), turned and channel-swapped with ``flip``, and bitwise the packed transform_weight_into (the
    same float64 arithmetic); None (nothing written) where the GEMMs' N is not whole panels."""
    rng = np.random.default_rng(10)
    half = panel_width(dtype) // 2
    weight = rng.standard_normal((2 * half, 3 * half // 2, 3, 3)).astype(dtype)  # N = 1 or 3/4 panel
    turned = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    out = np.full(16 * weight.shape[0] * weight.shape[1], np.nan, dtype)
    got = transform_weight_panels_into(turned if flip else weight, out, flip)
    # with flip the transform turns ``turned`` back: the forward weight's U, channels (Cin, Cout) -> (Cout, Cin)
    expected = stacked_panels(reference_u(weight).astype(dtype))
    if dtype == np.float32:
        np.testing.assert_array_equal(got, expected)
    else:  # (the einsum sums in another order)
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)
    source = turned if flip else weight
    unfused = transform_weight_into(source, np.empty(out.size, dtype), flip)
    np.testing.assert_array_equal(got, stacked_panels(unfused))
    assert transform_weight_panels_into(weight if flip else turned, out, flip) is None


def test_forward_on_panels_without_u_matches_forward_with_u():
    rng = np.random.default_rng(11)
    x, weight = rng.standard_normal((2, 7, 6, 8)), rng.standard_normal((16, 8, 3, 3))
    pads = ((1, 1), (1, 1))
    panels = transform_weight_panels_into(weight, np.empty(16 * 8 * 16))
    with_u = winograd_forward(x, transform_weight(weight), None, pads, np.empty((2, 7, 6, 16)), panels=panels)
    without = winograd_forward(x, None, None, pads, np.empty((2, 7, 6, 16)), panels=panels)
    np.testing.assert_array_equal(without, with_u)
    assert relative_error(without, reference(x, weight, None, pads, NONE)) < FLOAT64_TOLERANCE
    with pytest.raises(ValueError):
        winograd_forward(x, None, None, pads, np.empty((2, 7, 6, 16)))  # neither U nor panels
    # 14 outputs, padded to 16 lanes in the last panel (what the inference plan keeps instead of U)
    weight = rng.standard_normal((14, 8, 3, 3))
    panels = stacked_panels(transform_weight(weight))
    assert panels.size == 16 * 8 * 16
    without = winograd_forward(x, None, None, pads, np.empty((2, 7, 6, 14)), panels=panels)
    np.testing.assert_array_equal(without, winograd_forward(x, transform_weight(weight), None, pads,
                                                            np.empty((2, 7, 6, 14)), panels=panels))
    assert relative_error(without, reference(x, weight, None, pads, NONE)) < FLOAT64_TOLERANCE
    with pytest.raises(ValueError, match="panels of a"):
        winograd_forward(x, None, None, pads, np.empty((2, 7, 6, 8)), panels=panels)  # 14 outputs' panels


def test_transform_weight_rounds_once_to_the_asked_dtype():
    rng = np.random.default_rng(9)
    weight = rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_allclose(transform_weight(weight), reference_u(weight), rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(transform_weight(weight, np.float32), reference_u(weight).astype(np.float32))
    single = weight.astype(np.float32)
    wide = transform_weight(single, np.float64)
    assert wide.dtype == np.float64
    np.testing.assert_allclose(wide, reference_u(single), rtol=1e-14, atol=1e-14)
    assert not np.array_equal(wide, wide.astype(np.float32).astype(np.float64))  # not rounded through float32


def test_the_training_rule():
    """Default workspaces: Winograd for resnet20's 3x3 stride-1 layers (the weight gradient from 32 channels; the
    direct kernel keeps 16 x 16; all three from 4x4 outputs), not for smaller outputs, other kernels, strides, or
    paddings over 2.
    (blocked_wide.py's kernels take precedence where their rule takes a conv: test_kernel_blocked_wide.py.)"""

    def plan(h, c, o, k=3, stride=1, pad=1):
        ho = (h + 2 * pad - k) // stride + 1
        return ConvWorkspace().plan(np.empty((2, h, h, c), np.float32), np.empty((o, c, k, k), np.float32), (stride, stride),
                                    ((pad, pad), (pad, pad)), (1, 1), 1, np.empty((2, ho, ho, o), np.float32))

    def paths(p):
        return p.winograd_forward, p.winograd_dx, p.winograd_weight, p.direct_weight

    assert paths(plan(32, 16, 16))[:3] == (True, True, False) and plan(32, 16, 16).direct_weight
    assert paths(plan(16, 32, 32))[:3] == (True, True, True)
    assert paths(plan(8, 64, 64))[:3] == (True, True, True)
    assert paths(plan(4, 512, 512))[:3] == (True, True, True)  # from 4x4 outputs
    for p in (plan(2, 512, 512), plan(32, 8, 16), plan(32, 16, 16, k=5, pad=2), plan(32, 16, 32, stride=2),
              plan(32, 32, 32, pad=3)):
        assert paths(p)[:3] == (False, False, False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [16, 12])
def test_training_forward_and_input_gradient_on_either_weight_layout(dtype, channels):
    """conv.py's training Winograd: the panels written directly where the GEMMs' N is whole panels (16 channels),
    the padded U and a packing copy elsewhere (12 in float32); both give the reference forward and dx."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 8, channels)).astype(dtype)
    weight = rng.standard_normal((channels, channels, 3, 3)).astype(dtype)
    dy = rng.standard_normal((2, 8, 8, channels)).astype(dtype)
    args, pads = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1), ((1, 1), (1, 1))
    tol = 1e-4 if dtype == np.float32 else 1e-12
    ws = ConvWorkspace(winograd=True)
    y = conv2d_forward(x, weight, None, *args, np.full(dy.shape, np.nan, dtype), ws, keep=True)
    np.testing.assert_allclose(y, reference(x, weight, None, pads, NONE), rtol=tol, atol=tol)
    dx = np.full(x.shape, np.nan, dtype)
    conv2d_backward(x, weight, dy, *args, dx, None, None, ws, kept=True)
    np.testing.assert_allclose(dx, reference_grads(x, weight, dy, pads)[0], rtol=tol, atol=tol)


BLOCK_CASES = [
    # (N, H, W, Cin, Cout, pads): odd outputs (edge tiles both ways), a last block of fewer than ROWS tiles, panels
    # whole and half (float32); 12 -> 20 channels are not whole vectors, so both calls take the chunked path
    (2, 9, 7, 32, 16, ((1, 1), (1, 1))),
    (1, 6, 11, 16, 48, ((0, 2), (2, 1))),
    (3, 4, 4, 64, 32, ((1, 1), (1, 1))),
    (1, 5, 8, 12, 20, ((1, 1), (0, 2))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", BLOCK_CASES)
@pytest.mark.parametrize("kind", [RELU, NONE])
def test_block_by_block_forward_is_the_chunked_forward_bitwise(dtype, case, kind, monkeypatch):
    """Up to FUSED_MAX_CHANNELS channels (whole vectors) the forward runs block by block (_fused_forward): the same
    arithmetic in the same order as the chunked transforms and GEMMs, so the same bits, into a concat slice too."""
    import cnnlang.runtime.kernels.cpu.winograd as winograd

    n, h, w, cin, cout, pads = case
    rng = np.random.default_rng(cin * cout)
    x = rng.standard_normal((n, h, w, cin)).astype(dtype)
    weight, bias = rng.standard_normal((cout, cin, 3, 3)).astype(dtype), rng.standard_normal(cout).astype(dtype)
    panels = stacked_panels(transform_weight(weight))
    ho, wo = h + sum(pads[0]) - 2, w + sum(pads[1]) - 2

    def forward(limit, out):
        monkeypatch.setattr(winograd, "FUSED_MAX_CHANNELS", limit)
        return winograd_forward(x, None, bias, pads, out, ConvWorkspace(), kind, panels=panels)

    chunked = forward(0, np.empty((n, ho, wo, cout), dtype))
    buffer = np.full((n, ho, wo, cout + 5), 7.0, dtype)
    blocked = forward(max(cin, cout), buffer[..., 2 : 2 + cout])
    np.testing.assert_array_equal(blocked, chunked)
    assert np.all(buffer[..., :2] == 7.0) and np.all(buffer[..., 2 + cout :] == 7.0)
    tolerance = FLOAT64_TOLERANCE if dtype == np.float64 else FLOAT32_TOLERANCE
    assert relative_error(blocked, reference(x, weight, bias, pads, kind)) < tolerance
