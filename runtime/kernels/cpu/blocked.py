"""Register-blocked direct convolution for few channels (LeNet-5's c1 and c3), channels-last, all
in Numba's thread pool: forward (bias fused), weight and bias gradients, input gradient; and a
small GEMM on the same tile for convs whose window covers the whole image (c5).

Why: c3 (6 -> 16 channels, 5x5, 10x10 out) as im2col + GEMM has N = 16, where OpenBLAS runs far
below its peak and handing work between Numba's and OpenBLAS's pools costs as much as the work;
direct.py's kernels vectorise over pixels and keep their accumulators in memory (bound by L1
stores). Here every multiply-add runs in a register tile, as in a GEMM micro-kernel.

The tile (:func:`_make_tile`): P rows x NV vectors of L lanes (L = 32 bytes / itemsize: 8 float32,
4 float64), acc[p, :] += sum_k b[p, k] * v[k, :], b broadcast from memory, v loaded as vectors.
Numba does not vectorise such a tile by itself (its SLP vectoriser is off and the loop vectoriser
only sees innermost loops: both measured scalar, 8 GFLOP/s), so the tile is an ``@intrinsic``
that emits LLVM vector code (fma on <L x float>), two nested loops over k with the accumulators
in allocas that LLVM promotes to registers. It is compiled into its callers: no extra dispatcher,
and float32 and float64 are the callers' two specialisations.

* forward: pixels x output channels. Each image is copied, zero-padded, into a per-thread
  H' x W' x C buffer; for kernel row kh, the (kw, c) inputs of an output pixel are one contiguous
  run of KW*C, so the tile runs over k = (kh, (kw, c)) with b = those runs of P neighbouring
  pixels (step stride*C) and v = the weight packed as (O/VO, KH, KW*C, VO), zero-padded to whole
  tiles.
  Tiles are 6 pixels x 16 float32 channels when O > 8, else 8 pixels x 8 channels (6 rows,
  12 accumulators, measured 1.22x faster than 4 on c3 and 1.05x on resnet20's stem: 8 left the
  FMAs' latency exposed).
* weight gradient: dW (KH, O, KW*C) = sum over pixels of dy (x) x-run: per kernel row, the tile
  runs over every pixel of the image (rows, columns), b = dy (P output channels), v = the input
  run (2L of it per call); each thread sums its
  images into its own partial, the partials are added in order at the end (deterministic).
* input gradient: in blocked_dx.py (the tile adding straight into a padded dx image).
* planar forward, one input channel (c1): in planar.py (rows = output channels, lanes = pixels).
* GEMM (c5 as x (N, KH*KW*C) times the weight): B packed row-major with whole tiles, 4 x 2L tiles
  of C split over the threads.

Measured (benchmarks as in the commits; batch 64, float32, 2 threads, shared 2-core AMD EPYC, so
loaded at times): c3 forward 0.35 ms (87 GFLOP/s) against 0.55 for im2col + GEMM, its weight
gradient 0.31 ms; c1's planar forward 0.77 against 1.12 ms for direct.py's (one thread, CPU
time). A 5 x 1 tile for c1's weight gradient (rows = 5 taps, lanes = the 6 channels) measured
only 1.2x direct.py's (0.70 against 0.84 ms, one thread) and was left out (one more jitted
function for CI to compile). The LeNet-5 training step, all of these against im2col + GEMM, in
one process alternating (heavily loaded machine): median 20.6 -> 9.2 ms; BLAS's thread hand-offs
suffer most from the load.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from .llvm_vectors import VECTOR_BYTES as _VECTOR_BYTES
from .llvm_vectors import arguments, loaded_accumulators, store_accumulators, tile_arguments_fit, tile_sum, vector_type


def _make_tile(P: int, NV: int, vector_bytes: int = _VECTOR_BYTES):
    """The (P, NV) register tile as a Numba intrinsic:
    tile(acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K) does, for p < P and j < NV*L,
    acc[a0 + p*astep + j] += sum_{i<I, k<K} b[b0 + p*bp + i*bi + k*bk] * v[v0 + i*vi + k*vk + j]
    on flat contiguous arrays of one float dtype (no bounds checks: callers keep within). Two
    levels of k, so that one call covers a whole window (kernel rows x runs of (kw, c)) or a whole
    image's pixels (rows x columns): the accumulators are loaded and stored once per call."""

    @intrinsic
    def tile(typingctx, acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K):  # pragma: no cover - compile time
        if not tile_arguments_fit((acc, b, v), (a0, astep, b0, bp, bi, bk, v0, vi, vk, I, K)):
            return None
        sig = types.none(acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K)

        def codegen(context, builder, signature, args):
            vty, align = vector_type(context, signature.args[0].dtype, vector_bytes)
            pa, pb, pv = arguments(context, builder, signature, args, (0, 3, 8))
            a0_, astep_, b0_, bp_, bi_, bk_, v0_, vi_, vk_, I_, K_ = arguments(
                context, builder, signature, args, (1, 2, 4, 5, 6, 7, 9, 10, 11, 12, 13))
            slots, addresses = loaded_accumulators(builder, pa, a0_, astep_, P, NV, vty, align)
            tile_sum(builder, slots, P, pb, b0_, bp_, bi_, bk_, pv, v0_, vi_, vk_, I_, K_, vty, align)
            store_accumulators(builder, slots, addresses, align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


#: The tiles used: (pixels or rows, vectors). Wide: 6 x 2 (12 accumulators + 2 weight vectors),
#: 4 x 2 where 6 rows do not fit (GEMM, remainders); narrow, for at most L output channels: 8 x 1;
#: 6 x 2 also for one input channel (6 output channels x 2L pixels: LeNet-5's c1); one-row tails.
_tile_6x2 = _make_tile(6, 2)
_tile_4x2 = _make_tile(4, 2)
_tile_8x1 = _make_tile(8, 1)
_tile_1x2 = _make_tile(1, 2)


# Indices into the geometry vector (blocked_geometry).
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _O, _HP, _WP = range(15)


def blocked_geometry(x_shape, w_shape, stride, pads, y_shape) -> np.ndarray:
    """The int64 geometry vector of a conv x (N, H, W, C) -> y (N, Ho, Wo, O), weight (O, C, KH, KW)."""
    n, h, w, c = x_shape
    kh, kw = w_shape[2:]
    (pt, pb), (pl, pr) = pads
    return np.array([n, h, w, c, y_shape[1], y_shape[2], kh, kw, stride[0], stride[1], pt, pl, y_shape[3],
                     h + pt + pb, w + pl + pr], np.int64)


def scratch_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of scratch each thread needs: the padded image with slack for the reads of a
    tile's extra pixels and vector lanes past a row, then one tile of accumulators."""
    L = _VECTOR_BYTES // itemsize
    image = int(geo[_HP] * geo[_WP] * geo[_C])
    # forward's, input gradient's, or the planar forward's (O x 2L)
    tile = max(8 * 2 * L, 4 * (-(-int(geo[_KW] * geo[_C]) // (2 * L)) * 2 * L), int(geo[_O]) * 2 * L)
    return image + 8 * int(geo[_SW] * geo[_C]) + 4 * L + int(geo[_KW]) + tile


def weight_scratch_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of the packed weight (forward) or of one thread's weight-gradient partial."""
    L = _VECTOR_BYTES // itemsize
    kwc = int(geo[_KW] * geo[_C])
    o = int(geo[_O])
    forward = (-(-o // L) + 1) * L * int(geo[_KH]) * kwc
    weight = int(geo[_KH]) * (o + 4) * (-(-kwc // (2 * L)) * 2 * L) + o
    return max(forward, weight)


@njit(cache=True)
def _pad_image(x, n, geo, xp):  # pragma: no cover - compiled
    """Image n of x (N, H, W, C, flat) into xp as (Hp, Wp, C), zero-padded, zeros after it."""
    H, W, C, Wp, pt, pl = geo[_H], geo[_W], geo[_C], geo[_WP], geo[_PT], geo[_PL]
    size = H * W * C
    if geo[_HP] == H and Wp == W:
        xp[:size] = x[n * size : (n + 1) * size]
        xp[size:] = 0
        return
    xp[:] = 0
    for h in range(H):
        start = ((h + pt) * Wp + pl) * C
        xp[start : start + W * C] = x[(n * H + h) * W * C : (n * H + h + 1) * W * C]


@njit(cache=True)
def _pack_weight(weight, wp, O, C, KH, KW, VO):  # pragma: no cover - compiled
    """wp (O/VO, KH, KW*C, VO) from the conv's weight (O, C, KH, KW), zero-padded to whole tiles."""
    OB = (O + VO - 1) // VO
    KWC = KW * C
    wp[: OB * KH * KWC * VO] = 0
    for o in range(O):
        ob, j = o // VO, o % VO
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    wp[((ob * KH + kh) * KWC + kw * C + c) * VO + j] = weight[((o * C + c) * KH + kh) * KW + kw]


@njit(parallel=True, cache=True)
def blocked_forward(x, weight, bias, has_bias, y, geo, wp, scratch):  # pragma: no cover - compiled
    """y (N, Ho, Wo, O) = conv(x (N, H, W, C), weight (O, C, KH, KW)) + bias, all flat, channels
    last. wp: weight_scratch_size; scratch: T x scratch_size, images split in contiguous ranges
    over its T rows."""
    N, C, Ho, Wo, KH, KW, sh, sw, O, Wp = (geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH],
                                           geo[_SW], geo[_O], geo[_WP])
    L = 32 // x.itemsize
    wide = O > L
    VO = 2 * L if wide else L
    P = 6 if wide else 8
    OB = (O + VO - 1) // VO
    KWC = KW * C
    _pack_weight(weight, wp, O, C, KH, KW, VO)
    image = geo[_HP] * Wp * C + 8 * sw * C + 4 * L
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        acc = scratch[t, image : image + P * VO]
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_image(x, n, geo, xp)
            for oh in range(Ho):
                for ob in range(OB):
                    no = min(VO, O - ob * VO)
                    for ow0 in range(0, Wo, P):
                        for p in range(P):
                            for j in range(VO):
                                acc[p * VO + j] = bias[ob * VO + j] if has_bias and j < no else 0
                        b0 = (oh * sh * Wp + ow0 * sw) * C
                        v0 = ob * KH * KWC * VO
                        if wide:
                            _tile_6x2(acc, 0, VO, xp, b0, sw * C, Wp * C, 1, wp, v0, KWC * VO, VO, KH, KWC)
                        else:
                            _tile_8x1(acc, 0, VO, xp, b0, sw * C, Wp * C, 1, wp, v0, KWC * VO, VO, KH, KWC)
                        for p in range(min(P, Wo - ow0)):
                            dst = ((n * Ho + oh) * Wo + ow0 + p) * O + ob * VO
                            y[dst : dst + no] = acc[p * VO : p * VO + no]


@njit(parallel=True, cache=True)
def blocked_weight_grad(x, dy, dweight, dbias, has_bias, geo, parts, scratch):  # pragma: no cover - compiled
    """dweight (O, C, KH, KW) and, with has_bias, dbias (O) of the conv x -> dy (flat, channels
    last), overwritten. parts: T x weight_scratch_size (each thread's partial, added in thread
    order at the end: deterministic for a given thread count); scratch: T x scratch_size."""
    N, C, Ho, Wo, KH, KW, sh, sw, O, Wp = (geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH],
                                           geo[_SW], geo[_O], geo[_WP])
    L = 32 // x.itemsize
    VO = 2 * L
    KWC = KW * C
    KWCp = (KWC + VO - 1) // VO * VO
    Op = O + 4
    size = KH * Op * KWCp
    image = geo[_HP] * Wp * C + 8 * sw * C + 4 * L
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        part = parts[t, : size + O]
        part[:] = 0
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_image(x, n, geo, xp)
            d0 = n * Ho * Wo * O
            for kh in range(KH):
                for jb in range(0, KWC, VO):
                    x0 = kh * Wp * C + jb
                    o = 0
                    while o + 6 <= O:  # (12 accumulators: 4 rows left FMA latency exposed)
                        _tile_6x2(part, (kh * Op + o) * KWCp + jb, KWCp, dy, d0 + o, 1, Wo * O, O, xp, x0, sh * Wp * C,
                                  sw * C, Ho, Wo)
                        o += 6
                    while o + 4 <= O:
                        _tile_4x2(part, (kh * Op + o) * KWCp + jb, KWCp, dy, d0 + o, 1, Wo * O, O, xp, x0, sh * Wp * C,
                                  sw * C, Ho, Wo)
                        o += 4
                    while o < O:
                        _tile_1x2(part, (kh * Op + o) * KWCp + jb, KWCp, dy, d0 + o, 1, Wo * O, O, xp, x0, sh * Wp * C,
                                  sw * C, Ho, Wo)
                        o += 1
            for oh in range(Ho):
                d0 = (n * Ho + oh) * Wo * O
                if has_bias:
                    for ow in range(Wo):
                        for o in range(O):
                            part[size + o] += dy[d0 + ow * O + o]
    for t in range(1, T):
        parts[0, : size + O] += parts[t, : size + O]
    total = parts[0]
    for o in range(O):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    dweight[((o * C + c) * KH + kh) * KW + kw] = total[(kh * Op + o) * KWCp + kw * C + c]
        if has_bias:
            dbias[o] = total[size + o]


@njit(parallel=True, cache=True)
def blocked_gemm(a, a0, am, ak, b, bk, bn, c, M, N, K, packed, scratch):  # pragma: no cover - compiled
    """c (M, N, C-contiguous, flat) = A B with A[m, k] = a[a0 + m*am + k*ak], B[k, n] = b[k*bk + n*bn]:
    any transposes, for the GEMMs of small layers (LeNet-5's c5: 64 x 400 x 120), in Numba's pool
    (no hand-off to BLAS's threads). B is first packed row-major with N rounded up to whole tiles
    (packed: K * that elements), then each thread takes a contiguous range of 4-row x 2L-column
    tiles of c. scratch: T x 8L (one tile of accumulators per thread)."""
    L = 32 // c.itemsize
    VO = 2 * L
    Np = (N + VO - 1) // VO * VO
    for k in prange(K):
        row = packed[k * Np : (k + 1) * Np]
        for n in range(N):
            row[n] = b[k * bk + n * bn]
        row[N:] = 0
    MB = (M + 3) // 4
    NB = Np // VO
    tasks = MB * NB
    T = scratch.shape[0]
    for t in prange(T):
        acc = scratch[t, : 4 * VO]
        for task in range(t * tasks // T, (t + 1) * tasks // T):
            m0 = task // NB * 4
            n0 = task % NB * VO
            rows = min(4, M - m0)
            acc[:] = 0
            if rows == 4:
                _tile_4x2(acc, 0, VO, a, a0 + m0 * am, am, 0, ak, packed, n0, 0, Np, 1, K)
            else:
                for p in range(rows):
                    _tile_1x2(acc, p * VO, VO, a, a0 + (m0 + p) * am, am, 0, ak, packed, n0, 0, Np, 1, K)
            cols = min(VO, N - n0)
            for p in range(rows):
                c[(m0 + p) * N + n0 : (m0 + p) * N + n0 + cols] = acc[p * VO : p * VO + cols]
