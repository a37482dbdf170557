"""Reductions on the GPU without atomics: column sums (the bias gradient: dy summed over every
output pixel; PReLU's slope gradient), and the shared-memory trees of the kernels that reduce
within a block.

Two passes, no atomics: blocks of 32 columns x :data:`ROW_THREADS` threads sum row bands into a
(bands x columns) partial array, then one more pass sums the bands. With many rows and few
columns (dy of an early conv: 10^5 pixels, 64 channels) one pass over columns alone would keep
only a handful of blocks busy.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda
from numba.np import numpy_support

from .launch import MAX_THREADS, WARP, reduction_threads, threads_for

COLUMNS = 32
ROW_THREADS = 8
#: At most this many row bands in the first pass.
MAX_BANDS = 128


@functools.cache
def _band_kernel(dtype: str):
    zero = np.dtype(dtype).type(0)
    nbtype = numpy_support.from_dtype(np.dtype(dtype))

    @cuda.jit
    def kernel(a, out, band_rows):  # pragma: no cover - compiled
        """out[band, j] = sum of a[r, j] over the band's rows."""
        partial = cuda.shared.array((ROW_THREADS, COLUMNS), nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        j = cuda.blockIdx.x * COLUMNS + tx
        band = cuda.blockIdx.y
        total = zero
        if j < a.shape[1]:
            stop = min((band + 1) * band_rows, a.shape[0])
            for r in range(band * band_rows + ty, stop, ROW_THREADS):
                total += a[r, j]
        partial[ty, tx] = total
        cuda.syncthreads()
        if ty == 0 and j < a.shape[1]:
            for i in range(1, ROW_THREADS):
                total += partial[i, tx]
            out[band, j] = total

    return kernel


def column_sums(a, out) -> None:
    """out (columns,) = a (rows x columns, any strides).sum(axis=0), on the device."""
    rows, cols = a.shape
    kernel = _band_kernel(a.dtype.char)
    bands = max(1, min(MAX_BANDS, rows // (4 * ROW_THREADS)))
    band_rows = -(-rows // bands) if rows else 1
    blocks = (-(-cols // COLUMNS), bands)
    if bands == 1:
        kernel[blocks, (COLUMNS, ROW_THREADS)](a, out.reshape(1, cols), band_rows)
        return
    partial = cuda.device_array((bands, cols), a.dtype)
    kernel[blocks, (COLUMNS, ROW_THREADS)](a, partial, band_rows)
    kernel[(blocks[0], 1), (COLUMNS, ROW_THREADS)](partial, out.reshape(1, cols), bands)


# -- shared-memory trees for the kernels that reduce inside one block (softmax rows, batchnorm's
# chunked statistics: runtime/kernels/cuda/norm.py). Fixed trees, so every run adds in the same
# order; float64 shared memory, whatever the data's type.

#: rows one block of a chunked column reduction sums; the number of chunks grows with the rows
CHUNK_ROWS = 1024


@cuda.jit(device=True, inline=True)
def tree(shared, t, n, take_max):  # pragma: no cover - device code
    """Reduce shared[0:n] (n a power of two, every thread of the block calling) into shared[0]:
    a sum, or the maximum when ``take_max``."""
    half = n // 2
    while half > 0:
        if t < half:
            if take_max:
                if shared[t + half] > shared[t]:
                    shared[t] = shared[t + half]
            else:
                shared[t] += shared[t + half]
        cuda.syncthreads()
        half //= 2


@cuda.jit(device=True, inline=True)
def column_tree(shared, value):  # pragma: no cover - device code
    """Each thread of a 2-D block gives ``value``; returns, to every thread, the sum over the
    block's y threads that share its x (its column). Ends synchronised, shared free again."""
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    nx, ny = cuda.blockDim.x, cuda.blockDim.y
    shared[ty * nx + tx] = value
    cuda.syncthreads()
    half = ny // 2
    while half > 0:
        if ty < half:
            shared[ty * nx + tx] += shared[(ty + half) * nx + tx]
        cuda.syncthreads()
        half //= 2
    total = shared[tx]
    cuda.syncthreads()
    return total


def chunks(rows: int, chunk_rows: int = CHUNK_ROWS) -> int:
    """How many row chunks a chunked column reduction over ``rows`` rows uses (at least one)."""
    return max(1, -(-rows // chunk_rows))


def chunk_blocks(rows: int, channels: int, chunk_rows: int = CHUNK_ROWS) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) for a chunked column kernel: grid (channel tiles, chunks), block (tile
    channels, row threads) with tile * row threads <= MAX_THREADS, both powers of two; threads
    x run over channels, so a warp reads consecutive addresses."""
    tile = threads_for(channels, WARP, least=1)
    row_threads = reduction_threads(min(rows, chunk_rows), MAX_THREADS // tile)
    return (-(-channels // tile), chunks(rows, chunk_rows)), (tile, row_threads)
