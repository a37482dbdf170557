"""Register-blocked direct convolution for inference convs with few input channels and many
output channels (the 7x7 stride-2 stem of ResNet and GoogLeNet: 3 -> 64 channels), channels
last, bias and relu fused.

Why: as im2col + GEMM, the stem's GEMM has N = 64 and K = 147, where OpenBLAS runs far below
its peak, and the im2col writes and reads 49 / 4 values per input value (7x7, stride 2). Here
every multiply-add runs in a register tile (fused_tile.py: blocked.py's, with the epilogue),
reading a zero-padded copy of the input rows: for kernel row kh, an output pixel's (kw, c) inputs
are one contiguous run of KW*C, so the tile runs over k = (kh, (kw, c)), b = those runs of P
neighbouring pixels and v = the weight packed once per bind as (O/VO, KH, KW*C, VO), VO = 2L
output channels per tile; per output row, each group of VO channels takes every tile of the row
in turn (its weight panel, 9 KB for the stem, stays in L1).

The tile is 6 pixels x 2 vectors (12 accumulators, 2 weight vectors, 1 broadcast: 15 of AVX2's 16
registers; AVX-512's vectors where the host has them, llvm_vectors.HOST_VECTOR_BYTES: batch 8, 2
threads, AVX-512 Xeon, ResNet's stem 8.98 -> 5.63 ms, ZF-Net's 12.59 -> 7.56) instead of
blocked_forward's 4 x 2 (8 accumulators: too few to hide the FMA latency of 5 cycles at 2 per
cycle). Measured (ResNet-50's stem, batch 8, one thread, CPU time): blocked_forward 35-37 ms, this
tile with a scalar write-out loop 38.6 ms, with the epilogue in registers 24.7-25.5 ms; im2col +
GEMM 47-51 ms. On convs with many input channels (ResNet-50's stride-2 3x3 and 1x1 convs) it lost to
im2col + GEMM (0.47-0.88x, but 1.15x at 56 -> 28): its order streams the whole weight per output
row; gemm_epilogue.py's takes those.
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from ...host_arrays import host_empty
from .activation import RELU
from .blocked import _C, _H, _HO, _HP, _KH, _KW, _N, _O, _PL, _PT, _SH, _SW, _W, _WO, _WP, blocked_geometry
from .epilogue import NONE
from .fused_tile import make_tile
from .llvm_vectors import HOST_VECTOR_BYTES as _VECTOR_BYTES
from .workspace import holding

#: Pixels per tile, and vectors of output channels per tile (VO = TILE_V * L channels).
TILE_P = 6
TILE_V = 2
_tile = make_tile(TILE_P, TILE_V, vector_bytes=_VECTOR_BYTES)


def packed_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of the packed weight and bias (pack_stem_weight)."""
    vo = TILE_V * _VECTOR_BYTES // itemsize
    return -(-int(geo[_O]) // vo) * vo * (int(geo[_KH] * geo[_KW] * geo[_C]) + 1)


def scratch_size(geo: np.ndarray, itemsize: int) -> int:
    """Elements of scratch each thread needs: the padded image, slack for a tile's reads past the
    last row (pixels beyond Wo, discarded), and one tile of outputs (for the tiles that do not
    fit y: the last pixels of a row, the last channels)."""
    vo = TILE_V * _VECTOR_BYTES // itemsize
    image = int(geo[_HP] * geo[_WP] * geo[_C])
    return image + TILE_P * int(geo[_SW] * geo[_C]) + int(geo[_KW] * geo[_C]) + TILE_P * vo


@njit(cache=True)
def pack_stem_weight(weight, bias, has_bias, wp, O, C, KH, KW):  # pragma: no cover - compiled
    """wp = the weight (O, C, KH, KW) as (O/VO, KH, KW*C, VO), then the bias (or zeros), both
    zero-padded to whole tiles of VO output channels; all flat."""
    VO = TILE_V * _VECTOR_BYTES // weight.itemsize
    OB = (O + VO - 1) // VO
    KWC = KW * C
    size = OB * KH * KWC * VO
    wp[: size + OB * VO] = 0
    for o in range(O):
        ob, j = o // VO, o % VO
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    wp[((ob * KH + kh) * KWC + kw * C + c) * VO + j] = weight[((o * C + c) * KH + kh) * KW + kw]
        if has_bias:
            wp[size + o] = bias[o]


@njit(cache=True)
def _pad_rows(x, n, geo, xp, row0, rows):  # pragma: no cover - compiled
    """Rows row0 .. row0 + rows - 1 of image n of x (N, H, W, C, flat), zero-padded (Hp, Wp, C),
    into xp (flat, from 0)."""
    H, W, C, Wp, pt, pl = geo[_H], geo[_W], geo[_C], geo[_WP], geo[_PT], geo[_PL]
    for r in range(rows):
        out = xp[r * Wp * C : (r + 1) * Wp * C]
        h = row0 + r - pt
        if h < 0 or h >= H:
            out[:] = 0
            continue
        out[: pl * C] = 0
        out[pl * C : (pl + W) * C] = x[(n * H + h) * W * C : (n * H + h + 1) * W * C]
        out[(pl + W) * C :] = 0


@njit(parallel=True, cache=True)
def stem_forward(x, wp, relu, y, geo, scratch):  # pragma: no cover - compiled
    """y (N, Ho, Wo, O) = f(conv(x (N, H, W, C)) + bias), all flat, channels last; f is relu
    (NaN passes, as relu_forward) or the identity. wp: pack_stem_weight's weight and bias; geo:
    blocked.py's blocked_geometry; scratch: T x scratch_size. The tasks are images, or, when the
    images do not split evenly over the T threads (batch 1), T bands of output rows per image,
    contiguous ranges of them per thread; each task copies the padded input rows it reads. Whole
    tiles are written straight into y, bias and relu applied in registers."""
    N, C, Ho, Wo, KH, KW, sh, sw, O, Wp = (geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH],
                                           geo[_SW], geo[_O], geo[_WP])
    L = _VECTOR_BYTES // x.itemsize
    VO = 2 * L
    P = 6
    OB = (O + VO - 1) // VO
    KWC = KW * C
    bias0 = OB * KH * KWC * VO
    image = geo[_HP] * Wp * C + P * sw * C + KWC
    T = scratch.shape[0]
    bands = 1 if N % T == 0 else min(T, Ho)
    tasks = N * bands
    for t in prange(T):
        xp = scratch[t, :image]
        acc = scratch[t, image : image + P * VO]
        for task in range(t * tasks // T, (t + 1) * tasks // T):
            n, band = task // bands, task % bands
            oh0, oh1 = band * Ho // bands, (band + 1) * Ho // bands
            row0 = oh0 * sh
            rows = (oh1 - 1) * sh + KH - row0
            _pad_rows(x, n, geo, xp, row0, rows)
            xp[rows * Wp * C : rows * Wp * C + P * sw * C + KWC] = 0  # read past the last row, discarded
            for oh in range(oh0, oh1):
                for ob in range(OB):
                    no = min(VO, O - ob * VO)
                    v0 = ob * KH * KWC * VO
                    for ow0 in range(0, Wo, P):
                        b0 = ((oh * sh - row0) * Wp + ow0 * sw) * C
                        dst = ((n * Ho + oh) * Wo + ow0) * O + ob * VO
                        if ow0 + P <= Wo and no == VO:
                            _tile(y, dst, O, wp, bias0 + ob * VO, relu, xp, b0, sw * C, Wp * C, 1, wp, v0, KWC * VO,
                                  VO, KH, KWC)
                        else:
                            _tile(acc, 0, VO, wp, bias0 + ob * VO, relu, xp, b0, sw * C, Wp * C, 1, wp, v0, KWC * VO,
                                  VO, KH, KWC)
                            for p in range(min(P, Wo - ow0)):
                                y[dst + p * O : dst + p * O + no] = acc[p * VO : p * VO + no]


#: The inference convs this kernel takes (``stem_applies``): at most STEM_MAX_C input channels
#: (the GEMM's K = KH*KW*C is short, and im2col copies each input KH*KW/stride^2 times) and at
#: least STEM_MIN_O output channels (two tiles of float32 lanes; fewer leave the tile's lanes
#: idle or belong to blocked.py's and direct.py's kernels).
STEM_MAX_C = 4
STEM_MIN_O = 32


def stem_applies(x_shape: tuple, w_shape: tuple, dilation: tuple, groups: int, kind: int) -> bool:
    """Whether an inference conv of x (N, H, W, C) and weight (O, C, KH, KW), with activation
    ``kind`` (epilogue.py), runs on :func:`stem_forward`."""
    O, C, KH, KW = w_shape
    return (C <= STEM_MAX_C and O >= STEM_MIN_O and groups == 1 and tuple(dilation) == (1, 1) and KH * KW > 1
            and (KH, KW) != tuple(x_shape[1:3]) and kind in (NONE, RELU))


def bind_stem(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: tuple, pads: tuple,
              out: np.ndarray, kind: int, workspace) -> Callable[[], None]:
    """``out = f(conv(x) + bias)`` (f: activation ``kind``, NONE or RELU) on these fixed,
    C-contiguous arrays (x (N, H, W, C), weight (O, C, KH, KW), out (N, Ho, Wo, O)) as a call; the
    weight and bias are packed now (the inference plan binds again after every refresh). The
    per-thread scratch comes from ``workspace`` (a ConvWorkspace, shared by a plan's convs) at each
    call, for the thread count of that call."""
    geo = blocked_geometry(x.shape, weight.shape, stride, pads, out.shape)
    dtype = x.dtype
    packed = host_empty(packed_size(geo, dtype.itemsize), dtype)
    has_bias = bias is not None
    O, C, KH, KW = weight.shape
    pack_stem_weight(np.ascontiguousarray(weight).reshape(-1), bias if has_bias else packed[:0], has_bias, packed,
                     O, C, KH, KW)
    xf, yf, relu, size = x.reshape(-1), out.reshape(-1), kind == RELU, scratch_size(geo, dtype.itemsize)

    def run() -> None:
        threads = numba.get_num_threads()
        scratch = workspace.get("stem", threads * size, dtype).reshape(threads, size)
        stem_forward(xf, packed, relu, yf, geo, scratch)

    return holding(run, packed)
