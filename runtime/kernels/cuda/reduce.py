"""Deterministic reductions in shared memory, for the kernels that sum (batchnorm's statistics and
gradients, softmax rows, PReLU's slope gradient).

No float atomics anywhere: a block reduces its threads' partial sums by a fixed tree, and sums
over many rows go in two steps: each block sums one chunk of rows for a tile of channels (threads
x over channels, so a warp reads consecutive addresses; threads y over rows), then one thread
per channel combines the chunks in order. The chunking depends only on the row count, so a
result is the same on every run and every GPU.
"""

from __future__ import annotations

from numba import cuda, float64

from .launch import MAX_THREADS, WARP, reduction_threads, threads_for

#: rows one block sums (a chunk); the number of chunks grows with the rows
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
    """How many row chunks a column reduction over ``rows`` rows uses (at least one)."""
    return max(1, -(-rows // chunk_rows))


def chunk_blocks(rows: int, channels: int, chunk_rows: int = CHUNK_ROWS) -> tuple[tuple[int, int], tuple[int, int]]:
    """(grid, block) for a chunked column kernel: grid (channel tiles, chunks), block (tile
    channels, row threads) with tile * row threads <= MAX_THREADS, both powers of two."""
    tile = threads_for(channels, WARP, least=1)
    row_threads = reduction_threads(min(rows, chunk_rows), MAX_THREADS // tile)
    return (-(-channels // tile), chunks(rows, chunk_rows)), (tile, row_threads)


@cuda.jit
def _column_partials(a, partial, chunk_rows):  # pragma: no cover - device code
    shared = cuda.shared.array(MAX_THREADS, float64)
    rows, channels = a.shape
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    lo = cuda.blockIdx.y * chunk_rows
    hi = min(lo + chunk_rows, rows)
    total = 0.0
    if c < channels:
        for r in range(lo + cuda.threadIdx.y, hi, cuda.blockDim.y):
            total += a[r, c]
    total = column_tree(shared, total)
    if cuda.threadIdx.y == 0 and c < channels:
        partial[cuda.blockIdx.y, c] = total


@cuda.jit
def _combine_chunks(partial, out):  # pragma: no cover - device code
    c = cuda.grid(1)
    if c < out.size:
        total = 0.0
        for t in range(partial.shape[0]):
            total += partial[t, c]
        out[c] = total


def column_sums(a, out, partial, chunk_rows: int = CHUNK_ROWS) -> None:
    """out[c] = sum over rows of a[r, c] (rows x C device array); ``partial`` is float64
    scratch of shape (chunks(rows, chunk_rows), C)."""
    rows, channels = a.shape
    grid, block = chunk_blocks(rows, channels, chunk_rows)
    _column_partials[grid, block](a, partial, chunk_rows)
    _combine_chunks[-(-channels // threads_for(channels)), threads_for(channels)](partial, out)
