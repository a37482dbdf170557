"""Register-blocked direct convolution with 12-accumulator tiles, for 16 to 64 channels (resnet20's 3x3 layers),
channels last, all in Numba's thread pool: forward, input gradient at stride 1 (the forward of dy with the turned,
channel-swapped weight) and weight gradient.

Why not blocked.py's kernels as they are: their 4 x 2 tile keeps 8 accumulators, and an FMA's latency (4-5
cycles, two issued per cycle) needs 8-10 in flight; and their input gradient adds each pixel's KW*C share into a
padded image, a K = O loop of only 16 to 64 per tile. Here:

* forward: pixels x output channels as in blocked.py (same packed weight, same padded image), the tile 6 pixels x 2L
  channels (12 accumulators, 2 weight vectors and a broadcast: 15 of AVX2's 16 registers; a 3 x 4L tile needs 17 and
  measured 1.6x slower), L AVX-512's where the host has it and the output channels are whole blocks of that 2L (32
  float32: resnet20's 32-channel forward, batch 64, AVX-512 Xeon, alternating processes, 8.35 -> 6.06 ms, its
  training step 114.0 -> 108.4; 16 channels stay AVX2's, half of an AVX-512 tile); a row's last 1 to 4 pixels take a
  4 x 2L tile, its last 8 two of them (not a 6 and a 4 for 2: 32-pixel rows, 16 channels, 3.60 -> 3.35 ms; 8-pixel
  rows, 32 -> 64 stride 2, 2.18 -> 1.71; one thread, CPU time, the forward alone, batch 64, 41 alternating calls), 5
  take a 6 x 2L one running past the row's end (the padded image has slack; those pixels are not written out). A
  whole tile of a 2L-channel block starts from its bias vectors and is stored to the output (``_make_tile_to``);
  copying the bias into the output first and accumulating there (a load right after the copy's stores) measured
  1.05-1.09x slower at 16 channels (one thread, CPU time, the forward alone, batch 64, 21 and 31 alternating calls:
  3.86 -> 3.55 and 3.94 -> 3.63 ms), 1.04x at 32 (3.37 -> 3.23, 3.42 -> 3.27), bitwise the same. Numbering the pixels
  across rows (q = oh * Wp + ow: fewer wasted) measured 1.1x slower.
* input gradient at stride 1 (when no padding reaches the kernel size): the forward of dy padded by K - 1 - p
  with the weight turned by 180 degrees and its channels swapped. At resnet20's "same" 3x3 convs that is exactly
  the forward's multiply-adds (blocked.py's scatter: 8.1 against 5.9 ms at 16 channels, one thread).
* weight gradient: as blocked.py's (dW (KH, O, KW*C) = sum over pixels of dy (x) the input run), the tile 4 output
  channels x 3L of the run (L in AVX-512's width where the host has it, llvm_vectors.HOST_VECTOR_BYTES: resnet20's
  training step, batch 64, 2 threads, AVX-512 Xeon, alternating processes, this kernel 30.6 -> 23.5 ms, the step
  119.3 -> 110.4), each thread summing its images into its own partial, the partials added in thread order
  (deterministic for a given thread count). Where a pixel's run starts 128 bytes or more after the previous one's (32
  float32 channels, or 16 at stride 2), each tile call streams about three new cache lines a pixel (dy's and the
  run's) per 12 FMAs, the 32 bytes a cycle the L2 gives: so there the tiles run over rows of at least 96 output
  pixels at a time (all tiles of those rows, then the next rows), which stay in L1. At narrower runs the whole image
  at once stayed faster (the tile's accumulators are loaded and stored once per call). One thread, CPU time, batch
  64, the kernel alone, whole image -> rows (21 alternating calls, medians): 32 channels 16x16 4.21 -> 3.55 ms (72 ->
  85 GFLOP/s), 16 -> 32 stride 2 2.46 -> 1.91; 16 channels 32x32 3.24 / 3.27, 64 channels 8x8 3.61 / 3.68 and 32 ->
  64 stride 2 1.83 / 1.88 (the whole image: 64 pixels) unchanged.

Copies and zeroing run on views from 0 (``_copy``, ``_zero``): a loop over ``y[d0 + j]`` compiled to scalar code
with a negative-index check per element, and the padded image's copy, the tiles' starting values and their write
out so cost a third of the 16-channel forward's time (forward 7.8 -> 5.4 ms with them). All run without
reference counting (``_nrt=False``), like winograd.py's transforms.

The tile is blocked.py's ``_make_tile`` (LLVM vector FMAs in registers); results are not bitwise those of
Winograd or im2col (other summation order), but within the same float32 rounding bounds (tests).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from numba import types
from numba.extending import intrinsic

from .blocked import _make_tile, _pack_weight
from .llvm_vectors import HOST_VECTOR_BYTES as _HOST_BYTES
from .llvm_vectors import VECTOR_BYTES as _VECTOR_BYTES
from .llvm_vectors import arguments, const, loaded_accumulators, tile_arguments_fit, tile_sum, vector_at, vector_type


def _make_tile_to(P: int, NV: int, vector_bytes: int = _VECTOR_BYTES):
    """blocked.py's (P, NV) register tile with its starting accumulators read from one array and its sums stored
    to another: tile(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K) stores
    src[s0 + p*sstep + j] + sum_{i<I, k<K} b[b0 + p*bp + i*bi + k*bk] * v[v0 + i*vi + k*vk + j] to
    acc[a0 + p*astep + j] (p < P, j < NV*L), acc not read."""

    @intrinsic
    def tile(typingctx, src, s0, sstep, acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K):  # pragma: no cover
        if not tile_arguments_fit((acc, src, b, v), (s0, sstep, a0, astep, b0, bp, bi, bk, v0, vi, vk, I, K)):
            return None
        sig = types.none(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K)

        def codegen(context, builder, signature, args):
            vty, align = vector_type(context, signature.args[3].dtype, vector_bytes)
            ps, pa, pb, pv = arguments(context, builder, signature, args, (0, 3, 6, 11))
            s0_, sstep_, a0_, astep_, b0_, bp_, bi_, bk_, v0_, vi_, vk_, I_, K_ = arguments(
                context, builder, signature, args, (1, 2, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 16))
            slots, _ = loaded_accumulators(builder, ps, s0_, sstep_, P, NV, vty, align)
            tile_sum(builder, slots, P, pb, b0_, bp_, bi_, bk_, pv, v0_, vi_, vk_, I_, K_, vty, align)
            for p in range(P):
                row = builder.add(a0_, builder.mul(astep_, const(p)))
                for j in range(NV):
                    address = vector_at(builder, pa, builder.add(row, const(j * vty.count)), vty)
                    builder.store(builder.load(slots[p * NV + j]), address, align=align)
            return context.get_dummy_value()

        return sig, codegen

    return tile


_tile_6x2 = _make_tile(6, 2)
_tile_6x2_to = _make_tile_to(6, 2)
_tile_4x2_to = _make_tile_to(4, 2)
# the forward's tiles in AVX-512's width where the host has it, for output channels in whole blocks of 2L there
_tile_6x2_to_wide = _make_tile_to(6, 2, _HOST_BYTES)
_tile_4x2_to_wide = _make_tile_to(4, 2, _HOST_BYTES)
_tile_4x2 = _make_tile(4, 2)
# the weight gradient's tiles in AVX-512's width where the host has it (see the docstring)
_tile_4x3 = _make_tile(4, 3, _HOST_BYTES)
_tile_1x3 = _make_tile(1, 3, _HOST_BYTES)

# Indices into the geometry vector (blocked.py's blocked_geometry: the same vector).
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _O, _HP, _WP = range(15)


def scratch_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of scratch each thread needs: the padded image, slack for the reads of a tile's pixels past the
    last row (at most 5 pixels) and of the weight gradient's 3L lanes past a run, then one tile of accumulators
    (forward: at most 6 x 2L = 3 x 4L)."""
    image = int(geo[_HP] * geo[_WP] * geo[_C])
    return image + 6 * int(geo[_SW] * geo[_C]) + int(geo[_KW] * geo[_C]) + 16 * (_HOST_BYTES // itemsize)


def weight_scratch_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of the packed weight (forward) or of one thread's weight-gradient partial."""
    kwc = int(geo[_KW] * geo[_C])
    o = int(geo[_O])
    vo = _forward_block.py_func(o, itemsize)  # (the kernels' rule, as plain Python: no dispatch per call)
    forward = -(-o // vo) * vo * (int(geo[_KH]) * kwc + 6)  # then each block's 6 x 2L starting accumulators
    lw = 3 * (_HOST_BYTES // itemsize)
    weight = int(geo[_KH]) * o * (-(-kwc // lw) * lw)
    return max(forward, weight)


@njit(cache=True, _nrt=False)
def _pad_into(x, n, geo, xp):  # pragma: no cover - compiled
    """Image n of x (N, H, W, C, flat) into xp as (Hp, Wp, C), zero-padded, zeros after it (blocked.py's
    _pad_image, without reference counting)."""
    H, W, C, Wp, pt, pl = geo[_H], geo[_W], geo[_C], geo[_WP], geo[_PT], geo[_PL]
    # only the padding is zeroed (zeroing the whole image first cost 20 % of resnet20's 16-channel forward)
    _zero(xp[: pt * Wp * C])
    for h in range(H):
        dst = ((h + pt) * Wp + pl) * C
        _zero(xp[dst - pl * C : dst])
        _copy(x[(n * H + h) * W * C : (n * H + h + 1) * W * C], xp[dst : dst + W * C])
        _zero(xp[dst + W * C : (h + pt + 1) * Wp * C])
    _zero(xp[(H + pt) * Wp * C :])


@njit(cache=True, _nrt=False)
def _copy(src, dst):  # pragma: no cover - compiled
    """dst[:] = src on views: a loop over y[d0 + j] compiled to scalar code (a negative-index check per element),
    over views from 0 it vectorises (1.1-1.2x the forward); slice assignment needs reference counting."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(cache=True, _nrt=False)
def _zero(dst):  # pragma: no cover - compiled
    for j in range(dst.shape[0]):
        dst[j] = 0


@njit(parallel=True, cache=True, _nrt=False)
def wide_forward(x, weight, bias, has_bias, y, geo, wp, scratch):  # pragma: no cover - compiled
    """y (N, Ho, Wo, O) = conv(x (N, H, W, C), weight (O, C, KH, KW)) + bias, all flat, channels last, any
    stride and padding. wp: weight_scratch_size; scratch: T x scratch_size, images split in contiguous ranges
    over its T rows."""
    N = geo[_N]
    init = _prepare_forward(weight, bias, has_bias, geo, wp)
    image = _image_size(geo, x.itemsize)
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        acc = scratch[t, image : image + 12 * (_HOST_BYTES // x.itemsize)]
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_into(x, n, geo, xp)
            _forward_image(xp, n, geo, wp, init, acc, y)


@njit(cache=True, _nrt=False)
def _image_size(geo, itemsize):  # pragma: no cover - compiled
    """Elements of a thread's padded image with its slack (scratch_size less the tile's accumulators)."""
    return geo[_HP] * geo[_WP] * geo[_C] + 6 * geo[_SW] * geo[_C] + geo[_KW] * geo[_C] + 4 * (_HOST_BYTES // itemsize)


@njit(cache=True, _nrt=False)
def _forward_block(O, itemsize):  # pragma: no cover - compiled
    """Output channels per block of the forward's tile: 2L of AVX-512 where the host has it and O is whole blocks
    of them (32 float32 channels, 64), else 2L of AVX2 (16 channels: one AVX-512 vector would leave half the tile
    empty)."""
    wide = 2 * (_HOST_BYTES // itemsize)
    return wide if O % wide == 0 else 2 * (_VECTOR_BYTES // itemsize)


@njit(inline="always", _nrt=False)
def _tile_to(wide, p4, src, s0, sstep, acc, a0, astep, b, b0, bp, bi, v, v0, vi, vk, I, K):  # pragma: no cover
    """The forward's 4- or 6-pixel tile (p4) of the block width (wide), k along the run (bk = 1)."""
    if wide:
        if p4:
            _tile_4x2_to_wide(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, 1, v, v0, vi, vk, I, K)
        else:
            _tile_6x2_to_wide(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, 1, v, v0, vi, vk, I, K)
    elif p4:
        _tile_4x2_to(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, 1, v, v0, vi, vk, I, K)
    else:
        _tile_6x2_to(src, s0, sstep, acc, a0, astep, b, b0, bp, bi, 1, v, v0, vi, vk, I, K)


@njit(cache=True, _nrt=False)
def _prepare_forward(weight, bias, has_bias, geo, wp):  # pragma: no cover - compiled
    """The weight packed into wp, then each tile's starting accumulators (the bias of its channel block, zero
    past O); returns where those start."""
    C, KH, KW, O = geo[_C], geo[_KH], geo[_KW], geo[_O]
    VO = _forward_block(O, wp.itemsize)
    P = 6
    OB = (O + VO - 1) // VO
    _pack_weight(weight, wp, O, C, KH, KW, VO)
    init = OB * KH * KW * C * VO
    for ob in range(OB):
        for p in range(P):
            for j in range(VO):
                o = ob * VO + j
                wp[init + (ob * P + p) * VO + j] = bias[o] if has_bias and o < O else 0
    return init


@njit(cache=True, _nrt=False)
def _forward_image(xp, n, geo, wp, init, acc, y):  # pragma: no cover - compiled
    """wide_forward for image n, padded into xp: per output row, tiles of 6 pixels, the last one running past
    the row's end (numbering the pixels across rows, so that fewer are wasted, measured 1.1x slower)."""
    C, Ho, Wo, KH, KW, sh, sw, O, Wp = (geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH], geo[_SW],
                                        geo[_O], geo[_WP])
    VO = _forward_block(O, xp.itemsize)
    wide = VO != 2 * (_VECTOR_BYTES // xp.itemsize)
    P = 6
    OB = (O + VO - 1) // VO
    KWC = KW * C
    for ob in range(OB):
        no = min(VO, O - ob * VO)
        v0 = ob * KH * KWC * VO
        a0 = init + ob * P * VO
        for oh in range(Ho):
            ow0 = 0
            while ow0 < Wo:
                left = Wo - ow0
                # 4 pixels where at most 4 are left (resnet20's 16x16 rows: 6 + 6 + 4), and where 8 are: 4 + 4,
                # not 6 and a tile of 4 for the last 2 (32-pixel rows: 6 x 4 + 4 + 4)
                p4 = left <= 4 or left == 8
                b0 = (oh * sh * Wp + ow0 * sw) * C
                if no == VO and left >= (4 if p4 else P):
                    # a whole tile: from its bias vectors straight into y
                    d0 = ((n * Ho + oh) * Wo + ow0) * O + ob * VO
                    _tile_to(wide, p4, wp, a0, VO, y, d0, O, xp, b0, sw * C, Wp * C, wp, v0, KWC * VO, VO, KH, KWC)
                else:
                    _tile_to(wide, p4, wp, a0, VO, acc, 0, VO, xp, b0, sw * C, Wp * C, wp, v0, KWC * VO, VO, KH, KWC)
                    for p in range(min(4 if p4 else P, left)):
                        dst = ((n * Ho + oh) * Wo + ow0 + p) * O + ob * VO
                        _copy(acc[p * VO : p * VO + no], y[dst : dst + no])
                ow0 += 4 if p4 else P


@njit(cache=True)
def turn_weight(weight, out, O, C, KH, KW):  # pragma: no cover - compiled
    """out (C, O, KH, KW) = weight (O, C, KH, KW) turned by 180 degrees with its channels swapped: the weight
    whose stride-1 forward on dy is the input gradient."""
    for o in range(O):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    out[((c * O + o) * KH + KH - 1 - kh) * KW + KW - 1 - kw] = weight[((o * C + c) * KH + kh) * KW + kw]


@njit(parallel=True, cache=True)
def wide_weight_grad(x, dy, dweight, geo, parts, scratch):  # pragma: no cover - compiled
    """dweight (O, C, KH, KW) of the conv x -> dy (flat, channels last), overwritten; any stride and padding.
    parts: T x weight_scratch_size (each thread's partial, added in thread order at the end); scratch: T x
    scratch_size."""
    N = geo[_N]
    image = _image_size(geo, x.itemsize)
    size = _part_size(geo, x.itemsize)
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, :image]
        part = parts[t, :size]
        part[:] = 0
        for n in range(t * N // T, (t + 1) * N // T):
            _pad_into(x, n, geo, xp)
            _weight_image(xp, n, geo, dy, part)
    _sum_parts(parts, geo, dweight)


@njit(cache=True, _nrt=False)
def _part_size(geo, itemsize):  # pragma: no cover - compiled
    VO = 3 * (_HOST_BYTES // itemsize)
    return geo[_KH] * geo[_O] * ((geo[_KW] * geo[_C] + VO - 1) // VO * VO)


@njit(cache=True, _nrt=False)
def _weight_image(xp, n, geo, dy, part):  # pragma: no cover - compiled
    """Image n's share of the weight gradient, x's image padded into xp, added into part ((KH, O, KWCp))."""
    C, Ho, Wo, KH, KW, sh, sw, O, Wp = (geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH], geo[_SW],
                                        geo[_O], geo[_WP])
    VO = 3 * (_HOST_BYTES // xp.itemsize)
    KWC = KW * C
    KWCp = (KWC + VO - 1) // VO * VO
    # Rows of output pixels per pass over (kh, run block, channel block): the whole image where a pixel's run
    # starts less than 128 bytes after the previous one's, else rows of at least 96 pixels (see the docstring).
    R = Ho if sw * C * xp.itemsize < 128 else min(Ho, (96 + Wo - 1) // Wo)
    for r0 in range(0, Ho, R):
        rows = min(R, Ho - r0)
        d0 = (n * Ho + r0) * Wo * O
        for kh in range(KH):
            for jb in range(0, KWC, VO):
                x0 = (r0 * sh + kh) * Wp * C + jb
                o = 0
                while o + 4 <= O:
                    _tile_4x3(part, (kh * O + o) * KWCp + jb, KWCp, dy, d0 + o, 1, Wo * O, O, xp, x0,
                              sh * Wp * C, sw * C, rows, Wo)
                    o += 4
                while o < O:
                    _tile_1x3(part, (kh * O + o) * KWCp + jb, KWCp, dy, d0 + o, 1, Wo * O, O, xp, x0,
                              sh * Wp * C, sw * C, rows, Wo)
                    o += 1


@njit(cache=True)
def _sum_parts(parts, geo, dweight):  # pragma: no cover - compiled
    """The threads' partials added in thread order, then out as dweight (O, C, KH, KW)."""
    C, KH, KW, O = geo[_C], geo[_KH], geo[_KW], geo[_O]
    VO = 3 * (_HOST_BYTES // parts.itemsize)
    KWCp = (KW * C + VO - 1) // VO * VO
    size = KH * O * KWCp
    T = parts.shape[0]
    for t in range(1, T):
        parts[0, :size] += parts[t, :size]
    total = parts[0]
    for o in range(O):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    dweight[((o * C + c) * KH + kh) * KW + kw] = total[(kh * O + o) * KWCp + kw * C + c]
