"""Column sums on the GPU (the bias gradient: dy summed over every output pixel).

The partial sums live in the shared device workspace (runtime/kernels/cuda/views.py).

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

from .views import DEVICE_WORKSPACE

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
    partial = DEVICE_WORKSPACE.get("column sums", bands * cols, a.dtype).reshape(bands, cols)
    kernel[blocks, (COLUMNS, ROW_THREADS)](a, partial, band_rows)
    kernel[(blocks[0], 1), (COLUMNS, ROW_THREADS)](partial, out.reshape(1, cols), bands)
