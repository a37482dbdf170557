"""Direct convolution for small channel counts (stride 1, undilated, ungrouped): the forward with
the bias fused, and the weight and bias gradients, with no im2col columns and no BLAS call.

Why: for LeNet-5's c1 (1 -> 6 channels, 5x5) the im2col GEMM has N = 6 and K = 25; writing the
columns costs more than the arithmetic, BLAS runs such thin GEMMs far below its peak, and handing
work between Numba's and OpenBLAS's thread pools costs as much as the work. Here a conv is one
parallel region of Numba's pool (a contiguous range of images per thread) and nothing else.

The "extended row" layout: each image is copied, zero-padded, into planar C x Hp x Wp order
(Hp = Ho + KH - 1, Wp = Wo + KW - 1). An output plane is then computed over the flat positions
p = oh * Wp + ow, Ho * Wp of them, of which the Wp - Wo last of each row are unused; for kernel tap
(c, kh, kw) the input is the plane of c shifted by kh * Wp + kw, so every tap is one long
contiguous multiply-add, which LLVM vectorises. Four output channels share each load of the
shifted input.

* forward: acc[o] = bias[o] + sum_{c,kh,kw} w[o, c, kh, kw] * shift(x_c, kh, kw), transposed
  back to channels-last. The activation runs after, as the im2col path's epilogue.
* weight gradient: dW[o, c, kh, kw] = sum_n <dy_o, shift(x_c, kh, kw)> over the extended rows with
  dy zero in the unused columns (and dbias[o] = sum dy_o); each thread sums its images into its
  own partial (the GEMM's K split), and the partials are added at the end. The dot products are
  reductions: they are compiled with ``fastmath={"reassoc", "contract"}`` (vectorising a sum needs
  reassociation; NaN and Inf keep their meaning), so the sum order differs from the im2col path's,
  within float rounding.

Where it wins, by benchmarks/bench_small_conv.py (2 threads, float32, batch 64, best of 30 on a
shared 2-core machine; the rule is in workspace.py): LeNet-5's c1 forward 0.31 ms against 0.75 ms
for im2col + GEMM, its dW 0.25 against 1.09 ms; resnet20's 16-channel 3x3 dW 2.5 against 4.8 ms.
It loses where the channels are many or the rows short (output channels share no register
accumulators, so every tap stores its accumulator row: the loop is bound by L1 stores): c3's
forward 0.68 against 0.28 ms, resnet20's 32- and 64-channel dW 4.8 against 2.6 and 1.8 ms. Tried
and dropped: the input gradient as this forward on dy with the flipped weight (on c3 the padded
dy makes 2.5x the work; 2.6 against 0.4 ms for GEMM + col2im), and register blocking by scalar
accumulators for the SLP vectoriser (LLVM left the loop scalar: 4-10x slower).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Indices into the geometry vector of the direct kernels.
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _PT, _PL, _O = range(11)


def direct_geometry(x_shape, w_shape, pads, y_shape) -> np.ndarray:
    """The int64 geometry vector of a stride-1 conv x (N, H, W, C) -> y (N, Ho, Wo, O)."""
    n, h, w, c = x_shape
    o, _, kh, kw = w_shape
    (pt, _), (pl, _) = pads
    return np.array([n, h, w, c, y_shape[1], y_shape[2], kh, kw, pt, pl, o], np.int64)


@njit(cache=True)
def _pad_planar(x, n, geo, xp):  # pragma: no cover - compiled
    """Image n of channels-last x into xp, zero-padded planar C x Hp x Wp (plus slack)."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Wp = geo[_WO] + geo[_KW] - 1
    plane = (geo[_HO] + geo[_KH] - 1) * Wp
    pt, pl = geo[_PT], geo[_PL]
    xp[:] = 0
    for h in range(H):
        src = x[(n * H + h) * W * C : (n * H + h + 1) * W * C]
        base = (h + pt) * Wp + pl
        for c in range(C):
            dst = xp[c * plane + base : c * plane + base + W]
            for w in range(W):
                dst[w] = src[w * C + c]


def scratch_size(geo: np.ndarray) -> int:
    """Elements of scratch each thread needs: the padded planar image (with KW of slack: the
    last shifts read past the plane), then O extended output rows."""
    Wp = int(geo[_WO] + geo[_KW] - 1)
    return int(geo[_C]) * (int(geo[_HO] + geo[_KH]) - 1) * Wp + int(geo[_KW]) + int(geo[_O] * geo[_HO]) * Wp


@njit(parallel=True, cache=True)
def direct_forward(x, weight, bias, has_bias, y, geo, scratch):  # pragma: no cover - compiled
    """y (N, Ho, Wo, O) = conv(x (N, H, W, C), weight (O, C, KH, KW)) + bias, all flat;
    scratch: T x scratch_size(geo), one contiguous range of images per thread t."""
    N, C, Ho, Wo, KH, KW, O = geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_O]
    Wp = Wo + KW - 1
    plane = (Ho + KH - 1) * Wp
    L = Ho * Wp
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, : C * plane + KW]
        acc = scratch[t, C * plane + KW : C * plane + KW + O * L]
        for n in range(t * N // T, (t + 1) * N // T):
            _forward_image(x, weight, bias, has_bias, y, geo, n, xp, acc)


@njit(cache=True)
def _forward_image(x, weight, bias, has_bias, y, geo, n, xp, acc):  # pragma: no cover - compiled
    C, Ho, Wo, KH, KW, O = geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_O]
    Wp = Wo + KW - 1
    plane = (Ho + KH - 1) * Wp
    L = Ho * Wp
    taps = KH * KW
    _pad_planar(x, n, geo, xp)
    for o in range(O):
        acc[o * L : (o + 1) * L] = bias[o] if has_bias else 0
    o = 0
    while o < O:
        if o + 4 <= O:
            a0 = acc[o * L : (o + 1) * L]
            a1 = acc[(o + 1) * L : (o + 2) * L]
            a2 = acc[(o + 2) * L : (o + 3) * L]
            a3 = acc[(o + 3) * L : (o + 4) * L]
            for c in range(C):
                for kh in range(KH):
                    for kw in range(KW):
                        s = c * plane + kh * Wp + kw
                        xs = xp[s : s + L]
                        t = (o * C + c) * taps + kh * KW + kw
                        step = C * taps
                        w0, w1, w2, w3 = weight[t], weight[t + step], weight[t + 2 * step], weight[t + 3 * step]
                        for p in range(L):
                            v = xs[p]
                            a0[p] += w0 * v
                            a1[p] += w1 * v
                            a2[p] += w2 * v
                            a3[p] += w3 * v
            o += 4
        else:
            a0 = acc[o * L : (o + 1) * L]
            for c in range(C):
                for kh in range(KH):
                    for kw in range(KW):
                        s = c * plane + kh * Wp + kw
                        xs = xp[s : s + L]
                        w0 = weight[(o * C + c) * taps + kh * KW + kw]
                        for p in range(L):
                            a0[p] += w0 * xs[p]
            o += 1
    for oh in range(Ho):
        for ow in range(Wo):
            dst = y[((n * Ho + oh) * Wo + ow) * O : ((n * Ho + oh) * Wo + ow + 1) * O]
            for o in range(O):
                dst[o] = acc[o * L + oh * Wp + ow]


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _dot(a, b):  # pragma: no cover - compiled
    total = a.dtype.type(0)
    for p in range(a.size):
        total += a[p] * b[p]
    return total


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _sum(a):  # pragma: no cover - compiled
    total = a.dtype.type(0)
    for p in range(a.size):
        total += a[p]
    return total


@njit(parallel=True, fastmath={"reassoc", "contract"}, cache=True)
def direct_weight_grad(x, dy, parts, geo, scratch):  # pragma: no cover - compiled
    """parts (T, O*C*KH*KW + O), flat: thread t's partial dW (O, C, KH, KW) then dbias, summed
    over its contiguous range of images; scratch: T x scratch_size(geo)."""
    N, C, Ho, Wo, KH, KW, O = geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_O]
    Wp = Wo + KW - 1
    plane = (Ho + KH - 1) * Wp
    L = Ho * Wp
    taps = KH * KW
    nw = O * C * taps
    T = scratch.shape[0]
    for t in prange(T):
        part = parts[t * (nw + O) : (t + 1) * (nw + O)]
        part[:] = 0
        xp = scratch[t, : C * plane + KW]
        dyp = scratch[t, C * plane + KW : C * plane + KW + O * L]
        dyp[:] = 0  # the unused columns stay 0: they add nothing
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_planar(x, n, geo, xp)
            for oh in range(Ho):
                for ow in range(Wo):
                    src = dy[((n * Ho + oh) * Wo + ow) * O : ((n * Ho + oh) * Wo + ow + 1) * O]
                    for o in range(O):
                        dyp[o * L + oh * Wp + ow] = src[o]
            o = 0
            while o < O:
                # four output channels share each load of the shifted input
                if o + 4 <= O:
                    d0 = dyp[o * L : (o + 1) * L]
                    d1 = dyp[(o + 1) * L : (o + 2) * L]
                    d2 = dyp[(o + 2) * L : (o + 3) * L]
                    d3 = dyp[(o + 3) * L : (o + 4) * L]
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                s = c * plane + kh * Wp + kw
                                xs = xp[s : s + L]
                                s0 = s1 = s2 = s3 = x.dtype.type(0)
                                for p in range(L):
                                    v = xs[p]
                                    s0 += d0[p] * v
                                    s1 += d1[p] * v
                                    s2 += d2[p] * v
                                    s3 += d3[p] * v
                                t = (o * C + c) * taps + kh * KW + kw
                                step = C * taps
                                part[t] += s0
                                part[t + step] += s1
                                part[t + 2 * step] += s2
                                part[t + 3 * step] += s3
                    for j in range(4):
                        part[nw + o + j] += _sum(dyp[(o + j) * L : (o + j + 1) * L])
                    o += 4
                else:
                    d = dyp[o * L : (o + 1) * L]
                    part[nw + o] += _sum(d)
                    for c in range(C):
                        for kh in range(KH):
                            for kw in range(KW):
                                s = c * plane + kh * Wp + kw
                                part[(o * C + c) * taps + kh * KW + kw] += _dot(d, xp[s : s + L])
                    o += 1
