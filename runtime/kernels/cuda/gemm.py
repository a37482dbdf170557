"""GEMM on the device: ``out = op(a) @ op(b)`` with op a transpose when asked.

A placeholder: one thread per output element, a plain loop over K. Correct for every shape and
float dtype; the tiled shared-memory kernel (and cuBLAS through CuPy) replace this module.
"""

from __future__ import annotations

import math
from typing import Any

from numba import cuda

TILE = 16


@cuda.jit
def _naive(a, b, out, trans_a, trans_b):
    i, j = cuda.grid(2)
    if i < out.shape[0] and j < out.shape[1]:
        depth = a.shape[0] if trans_a else a.shape[1]
        total = 0.0  # accumulates in float64, rounded once into out
        for k in range(depth):
            left = a[k, i] if trans_a else a[i, k]
            right = b[j, k] if trans_b else b[k, j]
            total += left * right
        out[i, j] = total


def gemm(a: Any, b: Any, out: Any, trans_a: bool = False, trans_b: bool = False) -> Any:
    """Write ``op(a) @ op(b)`` into ``out`` (M x N, device arrays, one float dtype); returns ``out``."""
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k2 or tuple(out.shape) != (m, n):
        raise ValueError(
            f"gemm shapes do not fit: {'A^T' if trans_a else 'A'} {m}x{k}, {'B^T' if trans_b else 'B'} {k2}x{n}, "
            f"out {tuple(out.shape)}"
        )
    if m and n:
        _naive[(math.ceil(m / TILE), math.ceil(n / TILE)), (TILE, TILE)](a, b, out, trans_a, trans_b)
    return out
