"""Depthwise convolution (``groups`` = input channels) on channels-last arrays, forward and
backward, as direct Numba loops vectorised over channels.

im2col + GEMM is the wrong algorithm here: every group is a GEMM with one input channel, so the
work is C tiny GEMMs of K = KH*KW (measured 48.5 ms for 64 channels, 56², batch 8, against
PyTorch's 0.5 ms). With channels last, one tap of one output pixel is an element-wise
multiply-add of two contiguous channel vectors (input pixel x tap weight) into a third (output
pixel), which LLVM turns into SIMD code; the weight is repacked tap-major, (KH*KW, O), so each
tap's weights are one contiguous vector too.

Output channel o = c*M + m reads input channel c (M, the channel multiplier, is O / C, as in
PyTorch's grouped conv with groups = C). M = 1 has its own inner loop (one vector multiply-add);
M > 1 loops over the M outputs of each channel.

Work split, chosen so that no two threads write one element (no atomics, no races):

* forward: parallel over output rows (n, oh); per row and tap, the range of output columns whose
  input column is inside the image is computed once, so the inner loops have no bounds tests and
  padding costs nothing. The bias initialises the row; relu runs on the row while it is in cache
  (the inference epilogue); tanh and sigmoid run after as NumPy ufuncs (see epilogue.py).
* dx: parallel over input rows (n, ih), a gather of the output rows each input row feeds.
* A 3x3 kernel with multiplier 1 over whole vectors of channels (tiled_lanes) runs every pixel
  of the forward and of dx in depthwise_tile.py's register tiles instead (_forward_tiled,
  _backward_input_tiled: no bias or relu pass, the edges' windows cut to their taps); the loops
  above serve other kernels and channel counts.
* dW and dbias: parallel over chunks of output rows, each summing into its own partial, then a
  reduction over the few partials.

Geometry travels as one int64 vector (indices below), so each kernel has two specialisations
(float32, float64); all are ``cache=True`` and none uses fastmath (results do not depend on it).

One module of over 300 lines: the three kernels share the geometry vector, the column ranges
(_columns), the row-wide weight and the one-pass 3x3 window (_taps9), and the public functions
are their only callers; split, each part would import most of the others.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, uint64

from .activation import RELU, SIGMOID, TANH, activation_forward
from .depthwise_tile import PIXELS, tile_1x1, tile_1x8, tile_4x1, tile_4x2, tile_8x1
from .epilogue import NONE, channel_rows, row_span
from .llvm_vectors import HOST_VECTOR_BYTES
from .workspace import SERIAL_BELOW, output_size

_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _DH, _DW, _M = range(15)
#: Partial sums of the weight gradient: at most this many (one per chunk of output rows); more
#: chunks than threads keep both cores busy when another process holds one for a while.
MAX_PARTIALS = 8
#: The largest weight repeated along a row (see _wide_weight) or per-chunk partial of that width.
WIDE_BYTES = 2 << 20


@njit(cache=True)
def _madd(y, a, b):  # pragma: no cover - jitted
    """y += a * b on equal-length 1-D arrays. A function of its own because the same loop
    written inline in the kernels' parallel bodies was not vectorised (scalar code, measured
    3x slower); as a call its arrays are plain arguments and LLVM vectorises it."""
    for j in range(y.size):
        y[j] += a[j] * b[j]


@njit(inline="always")
def _columns(Wo, W, sw, pl, offset):  # pragma: no cover - jitted
    """The output columns [lo, hi) whose input column ow*sw - pl + offset lies in [0, W)."""
    start = pl - offset  # ow*sw >= start
    lo = 0 if start <= 0 else (start + sw - 1) // sw
    last = W - 1 + pl - offset  # ow*sw <= last
    hi = 0 if last < 0 else min(Wo, last // sw + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _taps9(y, xs, w, offsets, n, wstride):  # pragma: no cover - jitted
    """y[j] += sum over the 9 taps k of xs[offsets[k] + j] * w[k*wstride + j], j < n: a whole
    3x3 window in one pass, so each output element is loaded and stored once instead of 9 times
    (measured 1.7-2x faster than 9 passes of _madd). Unsigned indices: Numba then emits no
    negative-index wraparound, which would stop LLVM from vectorising the loop."""
    o0, o1, o2 = uint64(offsets[0]), uint64(offsets[1]), uint64(offsets[2])
    o3, o4, o5 = uint64(offsets[3]), uint64(offsets[4]), uint64(offsets[5])
    o6, o7, o8 = uint64(offsets[6]), uint64(offsets[7]), uint64(offsets[8])
    s = uint64(wstride)
    w1, w2, w3, w4, w5, w6, w7, w8 = s, s * uint64(2), s * uint64(3), s * uint64(4), s * uint64(5), s * uint64(6), s * uint64(7), s * uint64(8)
    for j in range(uint64(n)):
        y[j] += (xs[o0 + j] * w[j] + xs[o1 + j] * w[w1 + j] + xs[o2 + j] * w[w2 + j]
                 + xs[o3 + j] * w[w3 + j] + xs[o4 + j] * w[w4 + j] + xs[o5 + j] * w[w5 + j]
                 + xs[o6 + j] * w[w6 + j] + xs[o7 + j] * w[w7 + j] + xs[o8 + j] * w[w8 + j])  # fmt: skip


@njit(inline="always")
def _taps(i0, size, d):  # pragma: no cover - jitted
    """The 3x3 window's taps [lo, hi) along one axis whose index i0 + k*d lies in [0, size)."""
    lo = 0 if i0 >= 0 else min(3, (d - 1 - i0) // d)
    hi = 3 if i0 + 2 * d < size else (size - 1 - i0) // d + 1
    return lo, max(lo, hi)


@njit(inline="always")
def _input_taps(t, size, s, d):  # pragma: no cover - jitted
    """Along one axis, the taps k < 3 through which input index t - pad reaches an output:
    o = (t - k*d) / s whole and in [0, size), for s == 1 or d == 1 (then they are evenly
    spaced). Returns the first tap, their count, the step between taps, the first tap's o and
    the step of o from tap to tap."""
    if s == 1:
        lo = 0 if t < size else min(3, (t - size) // d + 1)
        hi = 0 if t < 0 else min(3, t // d + 1)
        return lo, max(0, hi - lo), 1, t - lo * d, -d
    k = t % s
    while k < t - s * (size - 1):
        k += s
    last = min(2, t)
    return k, (0 if k > last else (last - k) // s + 1), s, (t - k) // s, -1


@njit(inline="always")
def _tiled_span(src, s0, sp, sa, sb, na, nb, wt, w0, wa, wb, start, relu, dst, d0, dp, count, C,
                lanes):  # pragma: no cover - jitted
    """dst pixels q < count (at d0 + q*dp) = f(start + the taps a < na, b < nb of src at
    s0 + q*sp + a*sa + b*sb times the tap-major weight wt at w0 + a*wa + b*wb), f relu where
    asked, in depthwise_tile.py's tiles: blocks of PIXELS pixels x one channel vector, then 4
    pixels x 2 vectors, then single pixels x 8 vectors (each with as many vectors as C allows),
    each block through all its channels (its inputs stay in L1)."""
    q = 0
    while q < count:
        block = PIXELS if count - q >= PIXELS else (4 if count - q >= 4 else 1)
        at, to = s0 + q * sp, d0 + q * dp
        if block == PIXELS:
            for c in range(0, C, lanes):
                tile_8x1(src, at + c, sp, sa, sb, na, nb, wt, w0 + c, wa, wb, start, c, dst, to + c, dp, relu)
        elif block == 4:
            c = 0
            while c + 2 * lanes <= C:
                tile_4x2(src, at + c, sp, sa, sb, na, nb, wt, w0 + c, wa, wb, start, c, dst, to + c, dp, relu)
                c += 2 * lanes
            if c < C:
                tile_4x1(src, at + c, sp, sa, sb, na, nb, wt, w0 + c, wa, wb, start, c, dst, to + c, dp, relu)
        else:
            c = 0
            while c + 8 * lanes <= C:
                tile_1x8(src, at + c, sp, sa, sb, na, nb, wt, w0 + c, wa, wb, start, c, dst, to + c, dp, relu)
                c += 8 * lanes
            while c < C:
                tile_1x1(src, at + c, sp, sa, sb, na, nb, wt, w0 + c, wa, wb, start, c, dst, to + c, dp, relu)
                c += lanes
        q += block


@njit(inline="always")
def tiled_row(x, wt, start, relu, out, d0, ostride, geo, lanes, r, begin, end):  # pragma: no cover - jitted
    """Columns [begin, end) of output row ``r`` (image r // Ho, row r % Ho) of the forward for a
    3x3 kernel, multiplier 1, whole vectors of channels (tiled_lanes): pixel ow at d0 + ow*ostride
    of ``out``, in depthwise_tile.py's tiles, started from ``start`` (the bias, or zeros), each
    window's taps inside the image only, relu at the store where asked. The columns run as runs
    whose windows have the same taps (the image's inside, then each edge)."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho = geo[_HO]
    sh, sw, pt, pl, dh, dw = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW]
    n = r // Ho
    ih0 = (r % Ho) * sh - pt
    k0, k1 = _taps(ih0, H, dh)
    first_row = (n * H + ih0 + k0 * dh) * W * C
    ow = begin
    while ow < end:
        j0, j1 = _taps(ow * sw - pl, W, dw)
        run_end = ow + 1
        while run_end < end and _taps(run_end * sw - pl, W, dw) == (j0, j1):
            run_end += 1
        _tiled_span(x, first_row + (ow * sw - pl + j0 * dw) * C, sw * C, dh * W * C, dw * C, k1 - k0, j1 - j0,
                    wt, (3 * k0 + j0) * C, 3 * C, C, start, relu, out, d0 + ow * ostride, ostride, run_end - ow, C,
                    lanes)
        ow = run_end


@njit(parallel=True, cache=True, error_model="numpy")
def _forward_tiled(x, wt, start, relu, out, ostride, geo, lanes):  # pragma: no cover - jitted
    """_forward for a 3x3 kernel, multiplier 1, whole vectors of channels: every output row by
    tiled_row."""
    Wo = geo[_WO]
    for r in prange(geo[_N] * geo[_HO]):
        tiled_row(x, wt, start, relu, out, r * Wo * ostride, ostride, geo, lanes, r, 0, Wo)


@njit(parallel=True, cache=True, error_model="numpy")
def _backward_input_tiled(dy, wt, dx, geo, lanes):  # pragma: no cover - jitted
    """_backward_input for a 3x3 kernel, multiplier 1, whole vectors of channels and, per axis,
    stride 1 or dilation 1: every dx pixel in depthwise_tile.py's tiles, the forward's window
    mirrored (input pixel (ih, iw) gets tap (kh, kw) from dy at ((ih + pt - kh*dh) / sh,
    (iw + pl - kw*dw) / sw) where whole and inside: negative steps), from zeros. Per input row,
    its columns one residue mod sw at a time, as runs with the same taps (dy's pixels one apart)."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo = geo[_HO], geo[_WO]
    sh, sw, pt, pl, dh, dw = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW]
    zeros = np.zeros(C, dx.dtype)
    for r in prange(geo[_N] * H):
        n = r // H
        k, na, kstep, oh, ostep = _input_taps(r % H + pt, Ho, sh, dh)
        first_row = (n * Ho + oh) * Wo * C
        for residue in range(min(sw, W)):
            iw = residue
            while iw < W:
                taps = _input_taps(iw + pl, Wo, sw, dw)
                j, nb, jstep, ow, wstep = taps
                end = iw + sw
                while end < W and _input_taps(end + pl, Wo, sw, dw)[:3] == taps[:3]:
                    end += sw
                _tiled_span(dy, first_row + ow * C, C, ostep * Wo * C, wstep * C, na, nb, wt, (3 * k + j) * C,
                            3 * kstep * C, jstep * C, zeros, False, dx, (r * W + iw) * C, sw * C, (end - iw) // sw,
                            C, lanes)  # fmt: skip
                iw = end


@njit(parallel=True, cache=True, error_model="numpy")
def _forward(x, wt, wide, bias, has_bias, relu, out, ostride, geo):  # pragma: no cover - jitted
    """out pixel p (at out[p*ostride:]) = bias + sum over taps of x pixel * tap weight.

    A 3x3 kernel (multiplier 1) computes the pixels whose window lies inside the image in one
    pass of _taps9 per pixel, or per row with a ``wide`` weight (see _wide_weight); the other
    pixels, and other kernels, add one tap at a time (one long multiply-add over a row's span
    with a ``wide`` weight)."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo, KH, KW = geo[_HO], geo[_WO], geo[_KH], geo[_KW]
    sh, sw, pt, pl, dh, dw, M = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW], geo[_M]
    O = C * M
    zero = out.dtype.type(0)
    fused = KH == 3 and KW == 3 and M == 1
    inner_lo, _ = _columns(Wo, W, sw, pl, 0)
    _, inner_hi = _columns(Wo, W, sw, pl, (KW - 1) * dw)
    offsets = np.empty(9, np.int64)
    for k in range(9):
        offsets[k] = (k // 3) * dh * W * C + (k % 3) * dw * C
    for r in prange(geo[_N] * Ho):
        n = r // Ho
        oh = r % Ho
        for ow in range(Wo):
            y = out[(r * Wo + ow) * ostride : (r * Wo + ow) * ostride + O]
            if has_bias:
                for o in range(O):
                    y[o] = bias[o]
            else:
                for o in range(O):
                    y[o] = zero
        ih0 = oh * sh - pt
        # columns [a, b) are done by the fused path, the rest tap by tap
        a, b = Wo, Wo
        if fused and ih0 >= 0 and ih0 + 2 * dh < H and inner_lo < inner_hi:
            a, b = inner_lo, inner_hi
            base = (n * H + ih0) * W * C
            if wide.size:
                span = (b - a) * C
                start = base + (a * sw - pl) * C
                _taps9(out[(r * Wo + a) * C : (r * Wo + a) * C + span], x[start : start + offsets[8] + span],
                       wide[a * C :], offsets, span, Wo * C)  # fmt: skip
            else:
                for ow in range(a, b):
                    start = base + (ow * sw - pl) * C
                    _taps9(out[(r * Wo + ow) * ostride : (r * Wo + ow) * ostride + O],
                           x[start : start + offsets[8] + C], wt, offsets, C, O)  # fmt: skip
        for kh in range(KH):
            ih = ih0 + kh * dh
            if ih < 0 or ih >= H:
                continue
            xrow = (n * H + ih) * W * C
            for kw in range(KW):
                w = wt[(kh * KW + kw) * O : (kh * KW + kw + 1) * O]
                valid_lo, valid_hi = _columns(Wo, W, sw, pl, kw * dw)
                for part in range(2):  # the columns left and right of [a, b)
                    lo = valid_lo if part == 0 else max(valid_lo, b)
                    hi = min(valid_hi, a) if part == 0 else valid_hi
                    if lo >= hi:
                        continue
                    if wide.size:
                        span = (hi - lo) * C
                        ys = out[(r * Wo + lo) * C : (r * Wo + lo) * C + span]
                        xs = x[xrow + (lo - pl + kw * dw) * C : xrow + (lo - pl + kw * dw) * C + span]
                        ws = wide[(kh * KW + kw) * Wo * C : (kh * KW + kw) * Wo * C + span]
                        _madd(ys, xs, ws)
                        continue
                    for ow in range(lo, hi):
                        iw = ow * sw - pl + kw * dw
                        xv = x[xrow + iw * C : xrow + (iw + 1) * C]
                        y = out[(r * Wo + ow) * ostride : (r * Wo + ow) * ostride + O]
                        if M == 1:
                            _madd(y, xv, w)
                        else:
                            for c in range(C):
                                v = xv[c]
                                for m in range(M):
                                    y[c * M + m] += v * w[c * M + m]
        if relu:
            for ow in range(Wo):
                y = out[(r * Wo + ow) * ostride : (r * Wo + ow) * ostride + O]
                for o in range(O):
                    v = y[o]
                    y[o] = v if (v > zero or v != v) else zero  # NaN stays NaN


@njit(parallel=True, cache=True, error_model="numpy")
def _backward_input(dy, wt, wide, dx, geo):  # pragma: no cover - jitted
    """dx (overwritten) = the adjoint of _forward's taps, one input row per work item. With
    stride 1, a 3x3 kernel and multiplier 1, the input pixels that all 9 taps reach take one
    pass of _taps9, as in _forward."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo, KH, KW = geo[_HO], geo[_WO], geo[_KH], geo[_KW]
    sh, sw, pt, pl, dh, dw, M = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW], geo[_M]
    O = C * M
    zero = dx.dtype.type(0)
    fused = KH == 3 and KW == 3 and M == 1 and sh == 1 and sw == 1
    inner_lo = max(0, 2 * dw - pl)  # input columns whose 3 output columns all exist
    inner_hi = max(inner_lo, min(W, Wo - pl))
    offsets = np.empty(9, np.int64)  # tap k's output pixel, from the window's first (2, 2) one
    for k in range(9):
        offsets[k] = (2 - k // 3) * dh * Wo * C + (2 - k % 3) * dw * C
    for r in prange(geo[_N] * H):
        n = r // H
        ih = r % H
        row = dx[r * W * C : (r + 1) * W * C]
        for i in range(W * C):
            row[i] = zero
        # input columns [a, b) are done by the fused path, the rest tap by tap
        a, b = W, W
        first = ih + pt - 2 * dh  # the output row of tap row 2
        if fused and first >= 0 and ih + pt < Ho and inner_lo < inner_hi:
            a, b = inner_lo, inner_hi
            base = (n * Ho + first) * Wo * C
            if wide.size:
                span = (b - a) * C
                start = base + (a + pl - 2 * dw) * C
                _taps9(row[a * C : b * C], dy[start : start + offsets[0] + span], wide, offsets, span, Wo * C)
            else:
                for iw in range(a, b):
                    start = base + (iw + pl - 2 * dw) * C
                    _taps9(row[iw * C : (iw + 1) * C], dy[start : start + offsets[0] + C], wt, offsets, C, O)
        for kh in range(KH):
            t = ih + pt - kh * dh  # = oh * sh
            if t < 0 or t % sh != 0 or t // sh >= Ho:
                continue
            dyrow = (n * Ho + t // sh) * Wo * O
            for kw in range(KW):
                w = wt[(kh * KW + kw) * O : (kh * KW + kw + 1) * O]
                valid_lo, valid_hi = _columns(Wo, W, sw, pl, kw * dw)
                for part in range(2):  # the output columns that reach input columns outside [a, b)
                    shift = pl - kw * dw  # ow = iw + shift where [a, b) is fused (stride 1)
                    lo = valid_lo if part == 0 else max(valid_lo, b + shift)
                    hi = min(valid_hi, a + shift) if part == 0 else valid_hi
                    if lo < hi:
                        _input_tap(dy, w, wide, row, lo, hi, dyrow, (kh * KW + kw) * Wo * C, kw * dw, sw, pl, C, M)


@njit(inline="always")
def _input_tap(dy, w, wide, row, lo, hi, dyrow, wide_start, offset, sw, pl, C, M):  # pragma: no cover - jitted
    """One tap's share of a dx row from output columns [lo, hi) of output row ``dyrow``."""
    O = C * M
    zero = row.dtype.type(0)
    if wide.size:
        span = (hi - lo) * C
        ds = row[(lo - pl + offset) * C : (lo - pl + offset) * C + span]
        gs = dy[dyrow + lo * C : dyrow + lo * C + span]
        _madd(ds, gs, wide[wide_start : wide_start + span])
        return
    for ow in range(lo, hi):
        iw = ow * sw - pl + offset
        g = dy[dyrow + ow * O : dyrow + (ow + 1) * O]
        d = row[iw * C : (iw + 1) * C]
        if M == 1:
            _madd(d, g, w)
        else:
            for c in range(C):
                s = zero
                for m in range(M):
                    s += g[c * M + m] * w[c * M + m]
                d[c] += s


@njit(parallel=True, cache=True, error_model="numpy")
def _backward_params(x, dy, parts, wide, has_bias, geo):  # pragma: no cover - jitted
    """parts[p] (overwritten) = chunk p's sums: dW tap-major (KH*KW*O), then dbias (O); if
    ``wide``, each of those KH*KW + 1 vectors is Wo times as long, one per output column, and
    each tap is one long multiply-add over a row's span (the caller sums over the columns)."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo, KH, KW = geo[_HO], geo[_WO], geo[_KH], geo[_KW]
    sh, sw, pt, pl, dh, dw, M = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW], geo[_M]
    O = C * M
    T = KH * KW
    rows = geo[_N] * Ho
    P = parts.shape[0]
    zero = parts.dtype.type(0)
    for p in prange(P):
        acc = parts[p]
        for i in range(acc.size):
            acc[i] = zero
        for r in range(p * rows // P, (p + 1) * rows // P):
            n = r // Ho
            oh = r % Ho
            dyrow = r * Wo * O
            for kh in range(KH):
                ih = oh * sh - pt + kh * dh
                if ih < 0 or ih >= H:
                    continue
                xrow = (n * H + ih) * W * C
                for kw in range(KW):
                    lo, hi = _columns(Wo, W, sw, pl, kw * dw)
                    if wide:
                        span = (hi - lo) * C
                        a = acc[((kh * KW + kw) * Wo + lo) * C : ((kh * KW + kw) * Wo + lo) * C + span]
                        xs = x[xrow + (lo - pl + kw * dw) * C : xrow + (lo - pl + kw * dw) * C + span]
                        gs = dy[dyrow + lo * C : dyrow + lo * C + span]
                        _madd(a, gs, xs)
                        continue
                    a = acc[(kh * KW + kw) * O : (kh * KW + kw + 1) * O]
                    for ow in range(lo, hi):
                        iw = ow * sw - pl + kw * dw
                        xv = x[xrow + iw * C : xrow + (iw + 1) * C]
                        g = dy[dyrow + ow * O : dyrow + (ow + 1) * O]
                        if M == 1:
                            _madd(a, g, xv)
                        else:
                            for c in range(C):
                                v = xv[c]
                                for m in range(M):
                                    a[c * M + m] += g[c * M + m] * v
            if has_bias and wide:
                b = acc[T * Wo * O : (T + 1) * Wo * O]
                g = dy[dyrow : dyrow + Wo * O]
                for j in range(Wo * O):
                    b[j] += g[j]
            elif has_bias:
                b = acc[T * O : (T + 1) * O]
                for ow in range(Wo):
                    g = dy[dyrow + ow * O : dyrow + (ow + 1) * O]
                    for o in range(O):
                        b[o] += g[o]


# --------------------------------------------------------------------------- public API


def is_depthwise(channels: int, groups: int) -> bool:
    """Whether a conv with ``groups`` over ``channels`` input channels runs here (one input
    channel per group; a single group is an ordinary conv, for the GEMM path)."""
    return groups > 1 and groups == channels


def pack_depthwise_weight(weight: np.ndarray) -> np.ndarray:
    """(O, 1, KH, KW) → (KH*KW, O): each tap's weights contiguous over output channels."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.reshape(o, -1).T)


def _wide_weight(wt: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """The tap-major weight repeated for every output column, (KH*KW, Wo, O), when the stride
    along W is 1 and the multiplier 1: then a tap's output pixels of one row, its input pixels
    and this weight are three contiguous runs, and the tap is one long multiply-add instead of Wo
    short ones (3-4x faster at 64 channels). Empty where that does not hold or it would be large."""
    T, Wo, O = geo[_KH] * geo[_KW], geo[_WO], wt.shape[-1]
    if not _wide(geo, wt.itemsize):
        return wt[:0].reshape(-1)
    return np.ascontiguousarray(np.broadcast_to(wt.reshape(T, 1, O), (T, Wo, O))).reshape(-1)


def tiled_lanes(geo: np.ndarray, itemsize: int, input_grad: bool) -> int:
    """The vector's lanes where depthwise_tile.py's tiles run (a 3x3 kernel, multiplier 1, whole
    vectors of channels; for the input gradient, per axis stride 1 or dilation 1), else 0."""
    lanes = HOST_VECTOR_BYTES // itemsize
    window = geo[_KH] == 3 and geo[_KW] == 3 and geo[_M] == 1 and geo[_C] % lanes == 0
    spaced = 1 in (geo[_SH], geo[_DH]) and 1 in (geo[_SW], geo[_DW])
    return lanes if window and (spaced or not input_grad) else 0


def _wide(geo: np.ndarray, itemsize: int) -> bool:
    return geo[_SW] == 1 and geo[_M] == 1 and geo[_KH] * geo[_KW] * geo[_WO] * geo[_C] * itemsize <= WIDE_BYTES


def geometry(x_shape, w_shape, stride, pads, dilation, y_shape) -> np.ndarray:
    N, H, W, C = x_shape
    O, cg, KH, KW = w_shape
    sh, sw = (int(v) for v in stride)
    (pt, pb), (pl, pr) = ((int(a), int(b)) for a, b in pads)
    dh, dw = (int(v) for v in dilation)
    if min(sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0:
        raise ValueError("depthwise conv: stride and dilation must be >= 1 and padding >= 0")
    if cg != 1 or O % C:
        raise ValueError(f"depthwise conv: weight {tuple(w_shape)} does not fit {C} input channels")
    Ho = output_size(H, KH, sh, (pt, pb), dh)
    Wo = output_size(W, KW, sw, (pl, pr), dw)
    if Ho < 1 or Wo < 1 or tuple(y_shape) != (N, Ho, Wo, O):
        raise ValueError(f"depthwise conv: output has shape {tuple(y_shape)}, expected {(N, Ho, Wo, O)}")
    return np.array([N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, O // C], np.int64)


def _check_dtypes(*arrays) -> np.dtype:
    dtype = arrays[0].dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"depthwise conv: float32 or float64 arrays expected, got {dtype}")
    for a in arrays:
        if a is not None and a.dtype != dtype:
            raise TypeError(f"depthwise conv: mixed dtypes {dtype} and {a.dtype}")
    return dtype


class _Threads:
    """Runs a small call on this thread only: waking the second costs more than it saves
    (as in conv.py's serial_threads; the threshold is the same)."""

    def __init__(self, work: int):
        self.serial = work < SERIAL_BELOW
        self.previous = 0

    def __enter__(self):
        if self.serial:
            self.previous = numba.get_num_threads()
            numba.set_num_threads(1)

    def __exit__(self, *exc):
        if self.previous:
            numba.set_num_threads(self.previous)


def depthwise_forward(x, weight, bias, stride, pads, dilation, out, activation=NONE, packed=None):
    """out (N, Ho, Wo, O) = f(depthwise conv(x (N, H, W, C), weight (O, 1, KH, KW)) + bias),
    O = C * multiplier, output channel o reading input channel o // multiplier.

    Arguments as :func:`conv.conv2d_forward` (``groups`` is C). ``out`` is overwritten and may
    be a channel slice of a larger channels-last array; ``packed`` is
    :func:`pack_depthwise_weight` of ``weight`` for callers that keep it (inference)."""
    dtype = _check_dtypes(x, weight, bias, out)
    geo = geometry(x.shape, weight.shape, stride, pads, dilation, out.shape)
    rows = channel_rows(out, weight.shape[0], "depthwise conv")
    if out.shape[0] == 0:
        return out
    flat, ostride = row_span(rows)
    wt = pack_depthwise_weight(weight) if packed is None else packed
    x = np.ascontiguousarray(x).reshape(-1)
    lanes = tiled_lanes(geo, x.itemsize, input_grad=False)
    with _Threads(rows.size * geo[_KH] * geo[_KW]):
        if lanes:
            start = np.zeros(geo[_C], dtype) if bias is None else bias
            _forward_tiled(x, wt.reshape(-1), start, activation == RELU, flat, ostride, geo, lanes)
        else:
            wide = _wide_weight(wt, geo) if ostride == rows.shape[1] else wt[:0].reshape(-1)
            vector = np.empty(0, dtype) if bias is None else bias
            _forward(x, wt.reshape(-1), wide, vector, bias is not None, activation == RELU, flat, ostride, geo)
    if activation in (TANH, SIGMOID):
        activation_forward(out, out, activation)
    return out


def depthwise_backward(x, weight, dy, stride, pads, dilation, dx, dweight, dbias):
    """Gradients of :func:`depthwise_forward` given dy (N, Ho, Wo, O): writes (overwrites) dx,
    dweight (like weight) and dbias (O,); any may be None to skip it."""
    _check_dtypes(x, weight, dy, dx, dweight, dbias)
    geo = geometry(x.shape, weight.shape, stride, pads, dilation, dy.shape)
    for name, got, wanted in (("dx", dx, x.shape), ("dweight", dweight, weight.shape), ("dbias", dbias, (weight.shape[0],))):
        if got is not None and (got.shape != wanted or not got.flags.c_contiguous):
            raise ValueError(f"depthwise conv: {name} must be a C-contiguous array of shape {wanted}")
    x = np.ascontiguousarray(x).reshape(-1)
    dy = np.ascontiguousarray(dy).reshape(-1)
    O, T = weight.shape[0], geo[_KH] * geo[_KW]
    with _Threads(dy.size * T):
        if dx is not None:
            wt = pack_depthwise_weight(weight)
            lanes = tiled_lanes(geo, dx.itemsize, input_grad=True)
            if lanes:
                _backward_input_tiled(dy, wt.reshape(-1), dx.reshape(-1), geo, lanes)
            else:
                _backward_input(dy, wt.reshape(-1), _wide_weight(wt, geo), dx.reshape(-1), geo)
        if dweight is not None or dbias is not None:
            rows = geo[_N] * geo[_HO]
            count = max(1, min(rows, MAX_PARTIALS, 2 * numba.get_num_threads()))
            wide = _wide(geo, x.itemsize)
            parts = np.empty((count, (T + 1) * O * (geo[_WO] if wide else 1)), x.dtype)
            if rows:
                _backward_params(x, dy, parts, wide, dbias is not None, geo)
            else:
                parts[...] = 0
            total = parts.sum(axis=0)
            if wide:
                total = total.reshape(T + 1, geo[_WO], O).sum(axis=1).reshape(-1)
            if dweight is not None:
                dweight.reshape(O, T)[...] = total[: T * O].reshape(T, O).T
            if dbias is not None:
                dbias[...] = total[T * O :]
    return dx, dweight, dbias
