"""Register-blocked 1x1 convolution for inference, channels last, with the whole epilogue (bias,
residual shortcut, relu) applied in registers as each tile is stored.

Why: a 1x1 conv is the GEMM y (M pixels, O) = x (M, C) W^T, which the im2col path runs on
OpenBLAS and follows with epilogue.py's pass over y (bias, relu; with ``fuse-residual`` also the
shortcut). At ResNet-50's 56x56 layers (C = 64 or 256, O = 64 or 256, M = 25088 at batch 8) the
output is 6-26 MB, so that pass costs as much as a third of the GEMM, and OpenBLAS with K = 64
runs well below its peak. Here each 6-pixel x 2L-channel tile (fused_tile.py) sums over all C
inputs in registers and is stored once, finished.

Work: each thread takes a contiguous range of 6-pixel tiles (equal shares: ranges of 96-pixel
blocks left a 9:8 split at 14x14); per tile, every group of 2L output channels in turn, so the
tile's inputs stay in L1 while the weight streams from L2 (the other order, a weight panel over a
block of 96 pixels, measured 1.1-1.4x slower at 56x56: its stores go to 96 rows at a time). The
weight is packed once per bind as (O/VO, C, VO) with the bias after it, zero-padded to whole
tiles. The last pixels and a part tile of channels go through per-thread tile-sized buffers
(inputs and residual copied in, so no read runs past the arrays).
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from .activation import RELU
from .epilogue import NONE, row_span
from .fused_tile import make_tile
from .im2col import im2col
from .llvm_vectors import VECTOR_BYTES

TILE_P = 6
TILE_V = 2
_tile = make_tile(TILE_P, TILE_V)
_tile_residual = make_tile(TILE_P, TILE_V, residual=True)


def packed_size(C: int, O: int, itemsize: int) -> int:
    """Elements of the packed weight and bias (pack_pointwise_weight)."""
    vo = TILE_V * VECTOR_BYTES // itemsize
    return -(-O // vo) * vo * (C + 1)


def scratch_size(C: int, itemsize: int) -> int:
    """Elements of scratch per thread: a tile's inputs, its residual and its outputs."""
    vo = TILE_V * VECTOR_BYTES // itemsize
    return TILE_P * C + 2 * TILE_P * vo


@njit(cache=True)
def pack_pointwise_weight(weight, bias, has_bias, wp, O, C):  # pragma: no cover - compiled
    """wp = the weight (O, C) as (O/VO, C, VO), then the bias (or zeros), both zero-padded to
    whole tiles of VO output channels; all flat."""
    VO = 2 * 32 // weight.itemsize
    OB = (O + VO - 1) // VO
    size = OB * C * VO
    wp[: size + OB * VO] = 0
    for o in range(O):
        ob, j = o // VO, o % VO
        for c in range(C):
            wp[(ob * C + c) * VO + j] = weight[o * C + c]
        if has_bias:
            wp[size + o] = bias[o]


@njit(parallel=True, cache=True)
def pointwise_forward(x, wp, relu, residual, r, y, ys, M, C, O, scratch):  # pragma: no cover - compiled
    """y[m, o] (row m at y[m*ys :], ys >= O: y may be a channel slice of a wider array) =
    f(sum_c x[m, c] w[o, c] + bias[o] (+ r[m, o])) for M pixels; x (M, C) and r (M, O, only with
    ``residual``) C-contiguous, all flat; f relu (NaN passes) or the identity. wp:
    pack_pointwise_weight's; scratch: T x scratch_size."""
    L = 32 // x.itemsize
    VO = 2 * L
    P = 6
    OB = (O + VO - 1) // VO
    bias0 = OB * C * VO
    T = scratch.shape[0]
    tiles = (M + P - 1) // P
    for t in prange(T):
        xs = scratch[t, : P * C]
        rs = scratch[t, P * C : P * C + P * VO]
        acc = scratch[t, P * C + P * VO : P * C + 2 * P * VO]
        for task in range(t * tiles // T, (t + 1) * tiles // T):
            p0 = task * P
            rows = min(P, M - p0)
            if rows < P:
                xs[: rows * C] = x[p0 * C : (p0 + rows) * C]
                xs[rows * C :] = 0
            for ob in range(OB):
                no = min(VO, O - ob * VO)
                v0 = ob * C * VO
                c0 = bias0 + ob * VO
                if rows == P and no == VO:
                    if residual:
                        _tile_residual(y, p0 * ys + ob * VO, ys, wp, c0, relu, r, p0 * O + ob * VO, O, x, p0 * C, C,
                                       0, 1, wp, v0, 0, VO, 1, C)
                    else:
                        _tile(y, p0 * ys + ob * VO, ys, wp, c0, relu, x, p0 * C, C, 0, 1, wp, v0, 0, VO, 1, C)
                    continue
                # the last pixels, or a part tile of channels: through the tile-sized buffers
                if rows == P:
                    xs[:] = x[p0 * C : (p0 + rows) * C]
                if residual:
                    for p in range(rows):
                        rs[p * VO : p * VO + no] = r[(p0 + p) * O + ob * VO : (p0 + p) * O + ob * VO + no]
                    _tile_residual(acc, 0, VO, wp, c0, relu, rs, 0, VO, xs, 0, C, 0, 1, wp, v0, 0, VO, 1, C)
                else:
                    _tile(acc, 0, VO, wp, c0, relu, xs, 0, C, 0, 1, wp, v0, 0, VO, 1, C)
                for p in range(rows):
                    y[(p0 + p) * ys + ob * VO : (p0 + p) * ys + ob * VO + no] = acc[p * VO : p * VO + no]


def bind_pointwise(x2: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, y2: np.ndarray, kind: int,
                   workspace, residual: np.ndarray | None = None) -> Callable[[], None]:
    """``y2 = f(x2 @ weight.T + bias (+ residual))`` (f: activation ``kind``, NONE or RELU) on these
    fixed arrays as a call: x2 (M, C) and residual (M, O) C-contiguous, weight (O, C), y2 (M, O)
    with unit stride along O (a channel slice of a concat buffer will do). The weight and bias are
    packed now (the inference plan binds again after every refresh); the per-thread scratch comes
    from ``workspace`` (a ConvWorkspace) at each call, for that call's thread count."""
    M, C = x2.shape
    dtype = x2.dtype
    packed = _pack(weight, bias, dtype)
    yf, ys = row_span(y2)
    xf, relu, size, O = x2.reshape(-1), kind == RELU, scratch_size(C, dtype.itemsize), weight.shape[0]
    has_residual = residual is not None
    rf = residual.reshape(-1) if has_residual else packed[:0]

    def run() -> None:
        threads = numba.get_num_threads()
        scratch = workspace.get("gemm_epilogue", threads * size, dtype).reshape(threads, size)
        pointwise_forward(xf, packed, relu, has_residual, rf, yf, ys, M, C, O, scratch)

    return run


def bind_columns(x: np.ndarray, wcol: np.ndarray, bias: np.ndarray | None, y2: np.ndarray, kind: int, workspace,
                 plan) -> Callable[[], None]:
    """The im2col path's conv (``plan``: the workspace's ConvPlan of x (N, H, W, C) -> y2's (N*Ho*Wo,
    O) rows, ungrouped, not one GEMM on x's view) with :func:`pointwise_forward` in place of
    OpenBLAS's GEMM and epilogue.py's pass: per chunk of output rows, im2col into the workspace's
    column buffer (taken at each call: the plan's convs share it), then the fused GEMM on those
    columns. ``wcol``: the weight in column order (O, K), conv.pack_weight's."""
    dtype = x.dtype
    packed = _pack(wcol, bias, dtype)
    yf, ys = row_span(y2)
    xf, relu, size, O = x.reshape(-1), kind == RELU, scratch_size(plan.K, dtype.itemsize), wcol.shape[0]
    geo, rows, chunk, Wo, K = plan.geo, plan.rows, plan.chunk, plan.Wo, plan.K

    def run() -> None:
        threads = numba.get_num_threads()
        scratch = workspace.get("gemm_epilogue", threads * size, dtype).reshape(threads, size)
        col = workspace.get("col", chunk * Wo * K, dtype)
        for r0 in range(0, rows, chunk):
            nr = min(chunk, rows - r0)
            im2col(xf, col, geo, r0, nr)
            pointwise_forward(col, packed, relu, False, packed[:0], yf[r0 * Wo * ys :], ys, nr * Wo, K, O, scratch)

    return run


def _pack(weight: np.ndarray, bias: np.ndarray | None, dtype: np.dtype) -> np.ndarray:
    O, C = weight.shape
    packed = np.empty(packed_size(C, O, dtype.itemsize), dtype)
    has_bias = bias is not None
    pack_pointwise_weight(np.ascontiguousarray(weight).reshape(-1), bias if has_bias else packed[:0], has_bias,
                          packed, O, C)
    return packed


#: The inference 1x1 convs this kernel takes (``pointwise_applies``): at least this many pixels
#: (images x height x width). Measured at batch 8 (one thread, CPU time, against OpenBLAS's GEMM
#: and epilogue.py's pass): 56x56 layers 1.07-1.77x, 28x28 1.09-1.18x, 14x14 0.98-1.03x, 7x7
#: (392 pixels, C or O 2048) 0.94-1.04x. On im2col's columns (bind_columns) against im2col +
#: GEMM + epilogue: ResNet-50's stride-2 3x3 convs 1.11x (56 -> 28) and 1.05x (28 -> 14), its
#: stride-2 1x1 shortcuts 1.09x and 1.05x, but 0.70x at 14 -> 7 (392 pixels).
POINTWISE_MIN_PIXELS = 1024


def pointwise_applies(pixels: int, kind: int) -> bool:
    """Whether an ungrouped inference conv over ``pixels`` output pixels with activation ``kind``
    runs on :func:`pointwise_forward` (tanh and sigmoid stay epilogue.py's): a 1x1, stride-1,
    unpadded one on x's view, others on im2col's columns."""
    return pixels >= POINTWISE_MIN_PIXELS and kind in (NONE, RELU)
