"""im2col and its adjoint on the GPU, for channels-last arrays (the CPU's layout and column order:
runtime/kernels/cpu/im2col.py).

A column row holds one output pixel's receptive field in (group, kh, kw, c) order, so the
convolution of a chunk of output rows is ``col @ W^T`` per group with W packed to (O, KH*KW*Cg)
(:func:`pack_weight`). One thread per column element, consecutive threads on consecutive
channels: reads of x and writes of col both coalesce.

The adjoint is a *gather*: one thread per element of dx adds up the column entries that came from
it, so no two threads write one address and no atomics are needed (whose float order would also
make results vary from run to run). Chunks of output rows run in order; a chunk overwrites the dx
of every image whose output row 0 it holds, and adds to the others.

Geometry travels as one tuple of ints, in the order of :data:`GEOMETRY` (the CPU plan's vector).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda

GEOMETRY = ("N", "H", "W", "C", "Ho", "Wo", "KH", "KW", "sh", "sw", "pt", "pl", "dh", "dw", "G")
#: Threads per block of the one-dimensional kernels here.
THREADS = 256


def launch(count: int) -> tuple[int, int]:
    """(blocks, threads) for ``count`` threads of a one-dimensional kernel."""
    return max((count + THREADS - 1) // THREADS, 1), THREADS


@cuda.jit
def im2col(x, col, geo, r0, nrows):  # pragma: no cover - compiled
    """col[p, k] for the output rows [r0, r0 + nrows) (flattened n*Ho + oh) of x (N, H, W, C);
    col is (nrows*Wo, K). Taps in the padding become 0."""
    N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G = geo
    Cg = C // G
    KWC = KW * Cg
    Kg = KH * KWC
    K = G * Kg
    t = cuda.grid(1)
    if t >= nrows * Wo * K:
        return
    pix = t // K
    k = t - pix * K
    g = k // Kg
    rest = k - g * Kg
    kh = rest // KWC
    rest -= kh * KWC
    kw = rest // Cg
    c = rest - kw * Cg
    row = r0 + pix // Wo
    ow = pix - (pix // Wo) * Wo
    n = row // Ho
    oh = row - n * Ho
    ih = oh * sh - pt + kh * dh
    iw = ow * sw - pl + kw * dw
    if ih >= 0 and ih < H and iw >= 0 and iw < W:
        col[pix, k] = x[n, ih, iw, g * Cg + c]
    else:
        col[pix, k] = 0


@functools.cache
def col2im(dtype: str):
    """The adjoint of :func:`im2col` for one dtype ("f" or "d"): kernel(col, dx, geo, r0,
    nrows) gathers the chunk's columns into dx (N, H, W, C), one thread per element of the
    images the chunk touches (see the module docstring for which chunk overwrites, which adds).
    Launch with :func:`launch` of :func:`col2im_threads`."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(col, dx, geo, r0, nrows):  # pragma: no cover - compiled
        _col2im(col, dx, geo, r0, nrows, zero)

    return kernel


def col2im_threads(geo: tuple[int, ...], r0: int, nrows: int) -> int:
    ho = geo[4]
    images = (r0 + nrows - 1) // ho - r0 // ho + 1
    return images * geo[1] * geo[2] * geo[3]


@cuda.jit(device=True)
def _col2im(col, dx, geo, r0, nrows, zero):  # pragma: no cover - compiled
    N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G = geo
    Cg = C // G
    KWC = KW * Cg
    Kg = KH * KWC
    n0 = r0 // Ho
    n1 = (r0 + nrows - 1) // Ho
    t = cuda.grid(1)
    if t >= (n1 - n0 + 1) * H * W * C:
        return
    c = t % C
    rest = t // C
    iw = rest % W
    rest //= W
    ih = rest % H
    n = n0 + rest // H
    first = r0 - n * Ho  # this chunk's output rows of image n: [first, last)
    last = first + nrows
    if first < 0:
        first = 0
    if last > Ho:
        last = Ho
    g = c // Cg
    cc = c - g * Cg
    total = zero
    for kh in range(KH):
        u = ih + pt - kh * dh
        if u < 0 or u % sh != 0:
            continue
        oh = u // sh
        if oh < first or oh >= last:
            continue
        prow = (n * Ho + oh - r0) * Wo
        for kw in range(KW):
            v = iw + pl - kw * dw
            if v < 0 or v % sw != 0:
                continue
            ow = v // sw
            if ow < Wo:
                total += col[prow + ow, g * Kg + kh * KWC + kw * Cg + cc]
    if r0 <= n * Ho:  # the chunk holds this image's row 0: its first visit
        dx[n, ih, iw, c] = total
    else:
        dx[n, ih, iw, c] += total


@cuda.jit
def pack_weight(weight, packed):  # pragma: no cover - compiled
    """weight (O, Cg, KH, KW) → packed (O, KH*KW*Cg) in (kh, kw, c) order, the columns' order."""
    O, Cg, KH, KW = weight.shape
    t = cuda.grid(1)
    if t >= O * Cg * KH * KW:
        return
    o = t // (KH * KW * Cg)
    rest = t - o * (KH * KW * Cg)
    kh = rest // (KW * Cg)
    rest -= kh * (KW * Cg)
    kw = rest // Cg
    c = rest - kw * Cg
    packed[o, t - o * (KH * KW * Cg)] = weight[o, c, kh, kw]


@cuda.jit
def unpack_weight(packed, weight):  # pragma: no cover - compiled
    """The inverse of :func:`pack_weight` (for the weight gradient, computed in column order)."""
    O, Cg, KH, KW = weight.shape
    t = cuda.grid(1)
    if t >= O * Cg * KH * KW:
        return
    kw = t % KW
    rest = t // KW
    kh = rest % KH
    rest //= KH
    c = rest % Cg
    o = rest // Cg
    weight[o, c, kh, kw] = packed[o, (kh * KW + kw) * Cg + c]
