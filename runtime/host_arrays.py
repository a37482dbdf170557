"""Host arrays that start on a cache line, for the CPU backend and its kernels (a module of its own:
runtime/backend.py imports the kernels lazily, and they import this)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Bytes host arrays from :func:`host_empty` are aligned to: one cache line.
CACHE_LINE = 64


def host_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.empty, starting on a cache line. Why: NumPy's allocations start 16, 32 or 48 bytes into
    one, so the register tiles' 64-byte rows of outputs, shortcuts and packed weights (pointwise.py:
    2 vectors of 8 float32) each straddled two lines, and vector accesses were split in two. Aligned
    (AMD EPYC, AVX2; the fused GEMM alone, old and new alternating in one process): ResNet-50's 1x1
    shapes at batch 8, two threads, 1.02-1.08x (25088 x 64 -> 256 with a residual 6.54 -> 6.07 ms)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    raw = np.empty(size * dtype.itemsize + CACHE_LINE, np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start : start + size * dtype.itemsize].view(dtype).reshape(shape)
