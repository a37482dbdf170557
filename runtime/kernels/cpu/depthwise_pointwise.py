"""A depthwise 3x3 conv and the 1x1 conv that reads it as one inference kernel (the
``fuse-depthwise`` pass pairs them): per chunk of output pixels, the depthwise outputs go into a
buffer of the thread's own, and the 1x1 conv's GEMM reads them from there, so the depthwise output
is never written to memory nor read back.

Why: in MobileNet v1 every depthwise conv feeds a 1x1 conv, and at batch 8 the depthwise outputs
are 2-13 MB each, 64 MB in all: written by the depthwise kernel, read again by the GEMM, on a
machine where those layers are bound by memory traffic more than by arithmetic. Both halves are
the kernels the two layers run on their own (depthwise.py's ``tiled_row``, pointwise.py's
register tiles, in the same order), so the result is the same bit for bit. MobileNet v1 (batch 8,
2 threads, AMD EPYC, against the two kernels, alternating in one process): its 13 depthwise + 1x1
pairs 92.8 -> 84.1 ms, each 1.04-1.24x; batch 1 1.38x (docs/runtime.md).

Work: a task is one chunk of output pixels, whole 6-row blocks of the GEMM that begin and end
anywhere in a row or image (the depthwise outputs of its columns of each row it touches, then the
GEMM on them, every weight panel in turn over all of the chunk's blocks, so that a panel is read
from L2 once per chunk). Chunks of whole output rows left a part block of 1-4 rows in nearly
every chunk of a 14x14 or 7x7 map, on the slow part tiles: those pairs ran 0.87-0.94x of the two
kernels. Where there are fewer chunks than two per thread (batch 1 on a 7x7 map), a task is a
chunk and a share of the panels, each such task computing the chunk's depthwise outputs again (9
multiply-adds per value against the GEMM's C). A 1x1 weight past L2 is read once per chunk, so a
small batch's pixels make one chunk there (MobileNet's last pair 1.78 -> 1.08 ms at batch 1, 2.39
-> 1.97 at batch 2; at batch 8 one chunk would hold too much and 312 KiB chunks measured slower).
"""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np
from numba import njit, prange

from .depthwise import geometry, pack_depthwise_weight, tiled_lanes, tiled_row
from .epilogue import row_span
from .llvm_vectors import HOST_VECTOR_BYTES
from .pointwise import ROWS, pack_panels, padded_bias, panel_width, part_block, thread_scratch, whole_block
from .workspace import holding

#: Bytes of depthwise output one task holds (a fifth of the 512 KiB L2 of a Zen 3 core), so that
#: the GEMM reads it from L2 while the weight streams.
CHUNK_BYTES = 96 << 10
#: ... and at least this many pixels: each weight panel is read once per chunk, as fused_gemm reads
#: it once per GROUP row blocks (48 rows).
MIN_CHUNK_PIXELS = 48
#: A 1x1 weight larger than this is read from L3 once per chunk ...
BIG_WEIGHT_BYTES = 1 << 20
#: ... so the pixels of a small batch up to this much depthwise output make one chunk.
WIDE_CHUNK_BYTES = 400 << 10


@njit(parallel=True, cache=True, error_model="numpy", _nrt=False)
def _depthwise_pointwise(x, geo, wt, start, relu1, lanes, panels, bias, relu2, y, ldy, pixels, Wo, C, O, chunk,
                         parts, rows, part):  # pragma: no cover - compiled
    """y (``pixels`` rows of O at ldy, flat) = f2(f1(depthwise(x) + start) @ B + bias), ``chunk``
    pixels at a time (see the module docstring); rows: T x (chunk*C), each thread's depthwise
    output; part: T x (ROWS * 2L), its part tiles."""
    VO = 2 * HOST_VECTOR_BYTES // x.itemsize
    NB = (O + VO - 1) // VO
    whole = O // VO
    chunks = (pixels + chunk - 1) // chunk
    tasks = chunks * parts
    T = rows.shape[0]
    for t in prange(T):
        own, scratch = rows[t], part[t]
        for task in range(t * tasks // T, (t + 1) * tasks // T):
            c = task // parts
            share = task - c * parts
            p0 = c * chunk
            p1 = min(pixels, p0 + chunk)
            p = p0
            while p < p1:  # the chunk's pixels, row by row (its first and last rows maybe in part)
                r = p // Wo
                begin = p - r * Wo
                end = min(Wo, begin + p1 - p)
                tiled_row(x, wt, start, relu1, own, (p - p0 - begin) * C, C, geo, lanes, r, begin, end)
                p += end - begin
            M = p1 - p0
            for nb in range(share * NB // parts, (share + 1) * NB // parts):
                v0, n0 = nb * C * VO, nb * VO
                for m0 in range(0, M, ROWS):
                    if m0 + ROWS <= M and nb < whole:
                        whole_block(own, m0 * C, C, panels, v0, C, bias, n0, relu2, bias, 0, 0, False, y,
                                    (p0 + m0) * ldy + n0, ldy)
                    else:
                        part_block(own, m0 * C, C, panels, v0, C, bias, n0, relu2, bias, 0, False, y,
                                   (p0 + m0) * ldy + n0, ldy, m0, min(ROWS, M - m0), min(VO, O - n0), scratch)


def fits(channels: int, depthwise_kernel: tuple[int, ...], multiplier: int, dtype: np.dtype) -> bool:
    """Whether a depthwise conv runs here: depthwise.py's register tiles (3x3, multiplier 1, whole
    vectors of channels in this host's vectors)."""
    lanes = HOST_VECTOR_BYTES // np.dtype(dtype).itemsize
    return tuple(depthwise_kernel) == (3, 3) and multiplier == 1 and channels % lanes == 0


def chunk_pixels(pixels: int, channels: int, outputs: int, itemsize: int) -> int:
    """Pixels per chunk: whole ROWS-row blocks (a part block runs the slow part tiles) of
    CHUNK_BYTES of depthwise output, at least MIN_CHUNK_PIXELS; all the pixels in one chunk where
    the 1x1 weight is larger than BIG_WEIGHT_BYTES (read from L3 once per chunk) and they fit in
    WIDE_CHUNK_BYTES (the threads then share the weight's panels)."""
    if channels * outputs * itemsize > BIG_WEIGHT_BYTES and pixels * channels * itemsize <= WIDE_CHUNK_BYTES:
        return max(ROWS, -(-pixels // ROWS) * ROWS)
    return max(MIN_CHUNK_PIXELS, CHUNK_BYTES // (channels * itemsize) // ROWS * ROWS)


def bind_depthwise_pointwise(x: np.ndarray, depthwise_weight: np.ndarray, depthwise_bias: np.ndarray | None,
                             stride, pads, dilation, depthwise_relu: bool, weight: np.ndarray,
                             bias: np.ndarray | None, relu: bool, y2: np.ndarray, out_size: tuple[int, int],
                             workspace) -> Callable[[], None]:
    """``y2 = f(g(depthwise(x) + depthwise_bias) @ weight.T + bias)`` on these fixed arrays as a
    call, g and f relu where asked: x (N, H, W, C) C-contiguous, depthwise_weight (C, 1, 3, 3)
    (:func:`fits`), weight (O, C), y2 (N*Ho*Wo, O) with unit stride along O (a channel slice of a
    concat buffer will do), ``out_size`` (Ho, Wo). The weights are packed now (the inference plan
    binds again after every refresh); the per-thread buffers come from ``workspace`` (a
    ConvWorkspace) at each call, for that call's thread count."""
    N, _, _, C = x.shape
    O = weight.shape[0]
    Ho, Wo = out_size
    dtype = x.dtype
    if not fits(C, depthwise_weight.shape[2:], depthwise_weight.shape[0] // C, dtype):
        raise ValueError(f"depthwise weight {depthwise_weight.shape} on {C} channels: not a 3x3 depthwise conv "
                         "over whole vectors of channels")
    if y2.shape != (N * Ho * Wo, O) or weight.shape[-1] != C:
        raise ValueError(f"depthwise + 1x1 conv: output {y2.shape} and weight {weight.shape} do not fit input "
                         f"{x.shape} -> ({N * Ho * Wo}, O)")
    geo = geometry(x.shape, depthwise_weight.shape, stride, pads, dilation, (N, Ho, Wo, C))
    lanes = tiled_lanes(geo, x.itemsize, input_grad=False)
    wt = pack_depthwise_weight(depthwise_weight).reshape(-1)
    start = np.zeros(C, dtype) if depthwise_bias is None else np.ascontiguousarray(depthwise_bias, dtype)
    panels, padded = pack_panels(weight.reshape(O, C)), padded_bias(bias, O, dtype)
    yf, ldy = row_span(y2)
    xf = x.reshape(-1)
    pixels = N * Ho * Wo
    chunk = chunk_pixels(pixels, C, O, x.itemsize)
    chunks = -(-pixels // chunk)
    width = panel_width(dtype)

    def run() -> None:
        if not chunks:
            return  # (an empty batch)
        threads = numba.get_num_threads()
        parts = 1 if chunks >= 2 * threads else min(-(-O // width), -(-2 * threads // chunks))
        rows = workspace.get("depthwise_rows", threads * chunk * C, dtype).reshape(threads, chunk * C)
        part = thread_scratch(workspace, dtype).reshape(threads, ROWS * width)
        _depthwise_pointwise(xf, geo, wt, start, depthwise_relu, lanes, panels, padded, relu, yf, ldy, pixels, Wo, C,
                             O, chunk, parts, rows, part)

    return holding(run, wt, start, panels, padded)
