"""Inference convolutions over many pixels as one GEMM with the whole epilogue (bias, residual
shortcut, relu) applied in registers as each tile is stored, on pointwise.py's kernel
(:func:`pointwise.fused_gemm`): 1x1 stride-1 convs on x's view, others (stride-2 convs, 3x3 convs
left by ``winograd``) on im2col's columns.

Why: a 1x1 conv is the GEMM y (M pixels, O) = x (M, C) W^T, which the im2col path runs on
OpenBLAS and follows with epilogue.py's pass over y (bias, relu; with ``fuse-residual`` also the
shortcut). At ResNet-50's 56x56 layers (C = 64 or 256, O = 64 or 256, M = 25088 at batch 8) the
output is 6-26 MB, so that pass costs as much as a third of the GEMM, and OpenBLAS with K = 64
runs well below its peak. Here each 6-pixel x 2L-channel tile sums over all C inputs in
registers and is stored once, finished; and no work is handed to OpenBLAS's threads.

Work: each thread takes a contiguous range of 6-pixel tiles and runs GROUP of them per weight
panel before the next panel (pointwise.py's order for GoogLeNet), so that a panel is read once per
GROUP tiles. Until the tile prefetched its epilogue's lines (2026-12-07) every panel ran per tile in
turn (group 1), which measured 1.0-1.25x faster at K = 64-256 with a residual; since then GROUP
measured faster on every ResNet-50 1x1 shape at batch 8 (AMD EPYC, one thread, CPU time, 1.05-1.35x;
two threads 1.05-1.23x, the K = 64 layer with a residual 0.87-1.05x) and on im2col's columns
(stride-2 3x3s, M x K x N 6272 x 1152 x 128 and 1568 x 2304 x 256: 1.29-1.38x on two threads,
1.04-1.07x on one). This module had its own register-tile GEMM (fused_tile.py's tile, one k
per iteration) until the two became pointwise.py's one kernel: on ResNet-50's 1x1 shapes at batch
8 the same results bit for bit; one thread, CPU time, median of 15 alternating in one process on
a loaded machine, old -> new: 56x56 64->64 2.46 -> 2.54 ms, 64->256 + residual 14.08 -> 14.56,
28x28 128->512 + residual 11.05 -> 11.35, 14x14 256->1024 + residual 9.69 -> 9.63, 7x7 512->2048
+ residual 9.50 -> 9.69 (the K = 64 ones 3 % slower; without a residual and from K = 128 within
noise either way).
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np

from .activation import RELU
from .epilogue import NONE, row_span
from .im2col import im2col
from .pointwise import GROUP, ROWS, fused_gemm, pack_panels, padded_bias, panel_width, thread_scratch
from .workspace import holding


def _threads_scratch(workspace, dtype: np.dtype) -> np.ndarray:
    """fused_gemm's per-thread part-tile rows for this call's thread count, from the workspace."""
    return thread_scratch(workspace, dtype).reshape(numba.get_num_threads(), ROWS * panel_width(dtype))


def bind_pointwise(x2: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, y2: np.ndarray, kind: int,
                   workspace, residual: np.ndarray | None = None, group: int = GROUP) -> Callable[[], None]:
    """``y2 = f(x2 @ weight.T + bias (+ residual))`` (f: activation ``kind``, NONE or RELU) on these
    fixed arrays as a call: x2 (M, C) and residual (M, O) C-contiguous, weight (O, C), y2 (M, O)
    with unit stride along O (a channel slice of a concat buffer will do). The weight and bias are
    packed now (the inference plan binds again after every refresh); the per-thread scratch comes
    from ``workspace`` (a ConvWorkspace) at each call, for that call's thread count."""
    M, C = x2.shape
    O = weight.shape[0]
    dtype = x2.dtype
    panels, padded = pack_panels(weight.reshape(O, C)), padded_bias(bias, O, dtype)
    yf, ys = row_span(y2)
    xf, relu = x2.reshape(-1), kind == RELU
    has_residual = residual is not None
    rf = residual.reshape(-1) if has_residual else padded

    def run() -> None:
        fused_gemm(xf, 0, C, panels, 0, padded, relu, rf, O, has_residual, yf, 0, ys, 1, M, O, C, group,
                   _threads_scratch(workspace, dtype))

    return holding(run, panels, padded)


def bind_columns(x: np.ndarray, wcol: np.ndarray, bias: np.ndarray | None, y2: np.ndarray, kind: int, workspace,
                 plan, group: int = GROUP) -> Callable[[], None]:
    """The im2col path's conv (``plan``: the workspace's ConvPlan of x (N, H, W, C) -> y2's (N*Ho*Wo,
    O) rows, ungrouped, not one GEMM on x's view) with :func:`fused_gemm` in place of OpenBLAS's
    GEMM and epilogue.py's pass: per chunk of output rows, im2col into the workspace's column
    buffer (taken at each call: the plan's convs share it), then the fused GEMM on those columns.
    ``wcol``: the weight in column order (O, K), conv.pack_weight's."""
    dtype = x.dtype
    O, K = wcol.shape
    panels, padded = pack_panels(wcol), padded_bias(bias, O, dtype)
    yf, ys = row_span(y2)
    xf, relu = x.reshape(-1), kind == RELU
    geo, rows, chunk, Wo = plan.geo, plan.rows, plan.chunk, plan.Wo

    def run() -> None:
        scratch = _threads_scratch(workspace, dtype)
        col = workspace.get("col", chunk * Wo * K, dtype)
        for r0 in range(0, rows, chunk):
            nr = min(chunk, rows - r0)
            im2col(xf, col, geo, r0, nr)
            fused_gemm(col, 0, K, panels, 0, padded, relu, padded, 0, False, yf[r0 * Wo * ys :], 0, ys, 1, nr * Wo,
                       O, K, group, scratch)

    return holding(run, panels, padded)


#: The inference convs this kernel takes (``pointwise_applies``): at least this many output pixels
#: (images x height x width). Measured at batch 8 (one thread, CPU time, against OpenBLAS's GEMM
#: and epilogue.py's pass): 56x56 layers 1.07-1.77x, 28x28 1.09-1.18x, 14x14 0.98-1.03x; 7x7
#: (392 pixels, C or O 2048) 0.97-1.03x. Fewer pixels (batch 1's 7x7 and 14x14 maps) stay with
#: OpenBLAS, as small convs do (serial.py).
POINTWISE_MIN_PIXELS = 256
#: ... and at most this many bytes of weight (K x N). The kernel does not block K: each run of GROUP
#: row blocks streams the whole weight, which past the L2 cache comes from L3. In the group-1 order
#: (every panel per 6-row tile; AVX-512 Xeon, 2 MB of L2 a core, batch 8, 2 threads, fused against
#: pool_gemm.py's OpenBLAS + epilogue.py's pass, ms) 392 x 2048 -> 512 (4.2 MB) took 4.87 against
#: 3.01 and 1568 x 2304 -> 256 (2.4 MB) 9.13 / 6.17, so the limit was 2 MB. In the GROUP order with
#: the tile's prefetch (AMD EPYC, 1 MB of L2 a core; one thread CPU time, then two threads wall;
#: fused / BLAS + pass): 1568 x 2304 -> 256 23.97 / 27.73, 13.26 / 15.74; 392 x 512 -> 2048 with a
#: residual (4.2 MB) 12.09-13.59 / 12.84-14.18, 5.85-6.53 / 7.09-7.34; 392 x 2048 -> 512 12.39-13.58
#: / 12.51-14.06, 5.65-6.74 / 6.39-7.33; 1568 x 1024 -> 1024 about even; past 4 MB even or slower
#: (392 x 4608 -> 512, 9.4 MB: 0.95x one thread, 1.01-1.12x two; 392 x 1024 -> 2048, 8.4 MB: 0.92x,
#: 0.99-1.02x).
POINTWISE_MAX_WEIGHT_BYTES = 1 << 22


def pointwise_applies(pixels: int, kind: int, weight_bytes: int) -> bool:
    """Whether an ungrouped inference conv over ``pixels`` output pixels with activation ``kind``
    and a weight of ``weight_bytes`` runs on :func:`pointwise_forward` (tanh and sigmoid stay
    epilogue.py's): a 1x1, stride-1, unpadded one on x's view, others on im2col's columns."""
    return pixels >= POINTWISE_MIN_PIXELS and weight_bytes <= POINTWISE_MAX_WEIGHT_BYTES and kind in (NONE, RELU)
