"""Convolutions with one input channel (LeNet-5's c1) in training, in Numba's thread pool, with
lanes over neighbouring pixels (with one channel a shifted image row is contiguous): the forward
(:func:`planar_forward`) and, at stride 1, the weight gradient as a register-blocked dot product
over pixels (:func:`planar_weight_grad`).

The forward (moved here from blocked.py, whose pixels x channels tile has only KW = 5 taps per
kernel row with one channel, and 6 of 8 lanes used for c1's 6 channels) runs blocked.py's
broadcast tile with rows = output channels, then writes the tile out transposed. Its scalar
transposing loop took half of its time (c1, one thread: 0.73 ms in all); an ``@intrinsic`` store
with the rows unrolled brought it to 0.51 ms (results bit for bit the same).

Why: c1's dW (O = 6 output channels, 25 taps, 50 k pixels per batch of 64) is a GEMM
dW (O, taps) = sum over pixels of dy (pixel, o) * patch (pixel, tap) whose two small sides
(6 and 25) make poor vector lanes: blocked.py's weight gradient would fill 5 of 16 lanes
(kw, with one channel), and direct.py's dot products keep their accumulator rows in memory
(bound by L1 stores). Here the lanes run over pixels instead, in direct.py's "extended row"
layout: the image is padded to Hp x Wp, dy is transposed to planar O x Ho x Wp with zeros in
the Wp - Wo unused columns of each row, and then for tap (kh, kw) the patch value of flat
position q = oh * Wp + ow is xp[kh * Wp + kw + q]: one contiguous run, like dy's plane. So
dW[o, kh, kw] = sum_q dyp[o, q] * xp[kh * Wp + kw + q], a long dot product of two
contiguous runs.

The tile (:func:`_make_dot_tile`, an ``@intrinsic`` emitting LLVM vector code as blocked.py's
does, since Numba leaves such loops scalar or store-bound): R output channels x S horizontal
shifts kw, R*S vector accumulators in registers; each step loads R vectors of dy and S of the
shifted image (each shared by R multiply-adds). The lanes keep separate partial sums, added
only at the end, so no reassociation is needed inside the loop; each thread sums its images
into its own partial, the partials are added in thread order (deterministic for a thread count).

Measured (batch 64, float32, shared 2-core AMD EPYC, process CPU time, one thread, median of 20
calls alternating with direct.py's): c1's dW and dbias 0.55 against 0.81 ms. Of the 0.55, the dot
products take 0.25, transposing dy into planes 0.15 (0.35 with scalar indexing instead of row
slices), copying the image 0.05.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .blocked import _HO, _HP, _KH, _KW, _N, _O, _SH, _WO, _WP, _pad_image, _tile_1x2, _tile_4x2, _tile_6x2
from .llvm_vectors import VECTOR_BYTES as _VECTOR_BYTES
from .llvm_vectors import (arguments, const, fma_function, loaded_accumulators, store_accumulators, vector_at,
                           vector_type)


def _make_dot_tile(R: int, S: int):
    """The (R, S) dot-product tile as a Numba intrinsic:
    dot(acc, a0, ar, b, b0, br, v, v0, K) does, for r < R, s < S and lanes j < L,
    acc[a0 + r*ar + s*L + j] += sum_{k<K} b[b0 + r*br + k*L + j] * v[v0 + s + k*L + j]
    on flat contiguous arrays of one float dtype (no bounds checks: callers keep within)."""

    @intrinsic
    def dot(typingctx, acc, a0, ar, b, b0, br, v, v0, K):  # pragma: no cover - compile time
        if not all(isinstance(a, types.Array) and a.ndim == 1 for a in (acc, b, v)):
            return None
        if acc.dtype not in (types.float32, types.float64) or b.dtype != acc.dtype or v.dtype != acc.dtype:
            return None
        if not all(isinstance(i, types.Integer) for i in (a0, ar, b0, br, v0, K)):
            return None
        sig = types.none(acc, a0, ar, b, b0, br, v, v0, K)

        def codegen(context, builder, signature, args):
            vty, align = vector_type(context, signature.args[0].dtype)
            L = vty.count

            def vec_at(ptr, index):
                return vector_at(builder, ptr, index, vty)

            pa, pb, pv = arguments(context, builder, signature, args, (0, 3, 6))
            a0_, ar_, b0_, br_, v0_, K_ = arguments(context, builder, signature, args, (1, 2, 4, 5, 7, 8))
            fma = fma_function(builder, vty)
            slots, addresses = loaded_accumulators(builder, pa, a0_, ar_, R, S, vty, align)
            with cgutils.for_range(builder, K_) as loop:
                step = builder.mul(loop.index, const(L))
                bs = [builder.load(vec_at(pb, builder.add(builder.add(b0_, builder.mul(br_, const(r))), step)),
                                   align=align) for r in range(R)]
                vbase = builder.add(v0_, step)
                for s in range(S):
                    vs = builder.load(vec_at(pv, builder.add(vbase, const(s))), align=align)
                    for r in range(R):
                        slot = slots[r * S + s]
                        builder.store(builder.call(fma, [bs[r], vs, builder.load(slot)]), slot)
            store_accumulators(builder, slots, addresses, align)
            return context.get_dummy_value()

        return sig, codegen

    return dot


#: 2 output channels x 5 shifts (LeNet-5's 5x5 kernel): 10 accumulators, 2 + 1 vectors loaded
#: at a time, within AVX2's 16 registers; and single ones for the remainders of other shapes.
_dot_2x5 = _make_dot_tile(2, 5)
_dot_1x1 = _make_dot_tile(1, 1)


def _make_store_transposed(P: int):
    """store(acc, a0, astep, y, y0, ystep, lanes): y[y0 + j*ystep + p] = acc[a0 + p*astep + j] for
    p < P, j < lanes, as an ``@intrinsic``: a tile's P rows written out transposed, with P unrolled
    (Numba's loop over a run-time row count measured 1.5x slower on c1's forward)."""

    @intrinsic
    def store(typingctx, acc, a0, astep, y, y0, ystep, lanes):  # pragma: no cover - compile time
        if not all(isinstance(a, types.Array) and a.ndim == 1 for a in (acc, y)) or acc.dtype != y.dtype:
            return None
        if not all(isinstance(i, types.Integer) for i in (a0, astep, y0, ystep, lanes)):
            return None
        sig = types.none(acc, a0, astep, y, y0, ystep, lanes)

        def codegen(context, builder, signature, args):
            pa, py = arguments(context, builder, signature, args, (0, 3))
            a0_, astep_, y0_, ystep_, lanes_ = arguments(context, builder, signature, args, (1, 2, 4, 5, 6))
            with cgutils.for_range(builder, lanes_) as loop:
                j = loop.index
                src = builder.add(a0_, j)
                dst = builder.add(y0_, builder.mul(j, ystep_))
                for p in range(P):
                    value = builder.load(builder.gep(pa, [builder.add(src, builder.mul(astep_, const(p)))]))
                    builder.store(value, builder.gep(py, [builder.add(dst, const(p))]))
            return context.get_dummy_value()

        return sig, codegen

    return store


_store_t6 = _make_store_transposed(6)
_store_t1 = _make_store_transposed(1)


@njit(parallel=True, cache=True)
def planar_forward(x, weight, bias, has_bias, y, geo, scratch):  # pragma: no cover - compiled
    """y (N, Ho, Wo, O) = conv(x (N, H, W, 1), weight (O, 1, KH, KW)) + bias, all flat, channels
    last, for stride 1 along W: blocked.py's tile turned round, rows are output channels, lanes
    2L neighbouring output pixels of a row, k the KH x KW taps (b the weight itself, v the padded
    image row shifted by the tap: with one channel it is contiguous). The tile (O x 2L outputs)
    is then written out transposed to channels-last by an unrolled store. geo: blocked_geometry;
    scratch: T x blocked.py's scratch_size, images split in contiguous ranges over T."""
    N, Ho, Wo, KH, KW, sh, O, Wp = geo[_N], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH], geo[_O], geo[_WP]
    L = 32 // x.itemsize
    VO = 2 * L
    image = geo[_HP] * Wp + VO + KW
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        acc = scratch[t, image : image + O * VO]
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_image(x, n, geo, xp)
            for oh in range(Ho):
                for ow0 in range(0, Wo, VO):
                    for o in range(O):
                        acc[o * VO : (o + 1) * VO] = bias[o] if has_bias else 0
                    v0 = oh * sh * Wp + ow0
                    o = 0
                    while o + 6 <= O:
                        _tile_6x2(acc, o * VO, VO, weight, o * KH * KW, KH * KW, KW, 1, xp, v0, Wp, 1, KH, KW)
                        o += 6
                    while o + 4 <= O:
                        _tile_4x2(acc, o * VO, VO, weight, o * KH * KW, KH * KW, KW, 1, xp, v0, Wp, 1, KH, KW)
                        o += 4
                    while o < O:
                        _tile_1x2(acc, o * VO, VO, weight, o * KH * KW, KH * KW, KW, 1, xp, v0, Wp, 1, KH, KW)
                        o += 1
                    dst = ((n * Ho + oh) * Wo + ow0) * O
                    lanes = min(VO, Wo - ow0)
                    o = 0
                    while o + 6 <= O:
                        _store_t6(acc, o * VO, VO, y, dst + o, O, lanes)
                        o += 6
                    while o < O:
                        _store_t1(acc, o * VO, VO, y, dst + o, O, lanes)
                        o += 1


def planar_weight_sizes(geo: np.ndarray, itemsize: int) -> tuple[int, int]:
    """Elements per thread of (scratch, partial) for planar_weight_grad, geo from blocked_geometry:
    scratch = the padded image with slack for the last vector's reads past it, then dy's planes
    (each rounded up to whole vectors), then a plane of ones; partial = O x KH x KW vectors, then
    O for the bias."""
    L = _VECTOR_BYTES // itemsize
    plane = -(-int(geo[_HO] * geo[_WP]) // L) * L
    image = int(geo[_HP] * geo[_WP]) + int(geo[_KW]) + L
    return image + (int(geo[_O]) + 1) * plane, (int(geo[_O] * geo[_KH] * geo[_KW]) + int(geo[_O])) * L


@njit(parallel=True, cache=True)
def planar_weight_grad(x, dy, dweight, dbias, has_bias, geo, parts, scratch):  # pragma: no cover - compiled
    """dweight (O, 1, KH, KW) and, with has_bias, dbias (O) of the stride-1 conv x (N, H, W, 1) ->
    dy (N, Ho, Wo, O) (flat, channels last), overwritten. parts: T x the partial size of
    planar_weight_sizes; scratch: T x its scratch size, images split in contiguous ranges over T."""
    N, Ho, Wo, KH, KW, O, Wp = geo[_N], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_O], geo[_WP]
    L = 32 // x.itemsize
    plane = (Ho * Wp + L - 1) // L * L
    K = plane // L
    image = geo[_HP] * Wp + KW + L
    taps = KH * KW
    size = O * taps * L
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        dyp = scratch[t, image : image + O * plane]
        dyp[:] = 0  # the unused columns and the last vector's tail stay 0: they add nothing
        # dbias[o] as the dot product of dy's plane with ones: lanes apart, as dW's sums
        ones = scratch[t, image + O * plane : image + (O + 1) * plane]
        ones[:] = 1
        part = parts[t, : size + O * L]
        part[:] = 0
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_image(x, n, geo, xp)  # (zeros after the image: the last vectors read them)
            # row by row through slices: twice as fast as the scalar indexing (0.15 against 0.35 ms
            # for c1's batch, one thread)
            for oh in range(Ho):
                row = dy[(n * Ho + oh) * Wo * O : (n * Ho + oh + 1) * Wo * O]
                for o in range(O):
                    dst = dyp[o * plane + oh * Wp : o * plane + oh * Wp + Wo]
                    for ow in range(Wo):
                        dst[ow] = row[ow * O + o]
            for kh in range(KH):
                o = 0
                while o + 2 <= O:
                    a0 = (o * taps + kh * KW) * L
                    kw = 0
                    while kw + 5 <= KW:
                        _dot_2x5(part, a0 + kw * L, taps * L, dyp, o * plane, plane, xp, kh * Wp + kw, K)
                        kw += 5
                    while kw < KW:
                        _dot_1x1(part, a0 + kw * L, 0, dyp, o * plane, 0, xp, kh * Wp + kw, K)
                        _dot_1x1(part, a0 + taps * L + kw * L, 0, dyp, (o + 1) * plane, 0, xp, kh * Wp + kw, K)
                        kw += 1
                    o += 2
                if o < O:
                    for kw in range(KW):
                        _dot_1x1(part, (o * taps + kh * KW + kw) * L, 0, dyp, o * plane, 0, xp, kh * Wp + kw, K)
            if has_bias:
                for o in range(O):
                    _dot_1x1(part, size + o * L, 0, dyp, o * plane, 0, ones, 0, K)
    for t in range(1, T):
        parts[0, : size + O * L] += parts[t, : size + O * L]
    total = parts[0]
    for i in range(O * taps + (O if has_bias else 0)):
        s = total[i * L]
        for j in range(1, L):
            s += total[i * L + j]
        if i < O * taps:
            dweight[i] = s
        else:
            dbias[i - O * taps] = s
