"""The GEMMs of small fully connected layers in training (LeNet-5's f6: 64 x 120 x 84) by
blocked.py's register-tiled GEMM, in Numba's thread pool, as c5's already run (workspace.py's
BLOCKED_GEMM_MAX_MACS).

Why: OpenBLAS splits a GEMM over its own threads from M*N*K = 262144 on (f6: 645 k), and handing
work between its pool and Numba's costs as much as the work at this size, and far more when
another process holds a core: on the shared 2-core machine, under load, f6's forward and backward
took 16 and 31 ms (median of 30 training steps, 2 threads) instead of about 0.1 ms. With this
module, LeNet-5's training step (batch 64, 2 threads, 40 steps alternating in one process, loaded
machine): median 33.6 ms with BLAS against 10.8 ms; in a run without the stalls 10.35 against
10.56 ms. The cost: f6's three GEMMs alone, one thread, take 0.149 ms here against BLAS's 0.065.
"""

from __future__ import annotations

import numba
import numpy as np

from .blocked import blocked_gemm
from .workspace import BLOCKED_GEMM_MAX_MACS, ConvWorkspace

#: Below this many multiply-adds OpenBLAS runs a GEMM on the calling thread (its threshold:
#: 65536 x GEMM_MULTITHREAD_THRESHOLD = 4), with no hand-off, and faster than a Numba call:
#: LeNet-5's last fc (64 x 84 x 10), its three GEMMs 0.017 ms against 0.160 ms here.
BLAS_SERIAL_BELOW = 1 << 18


def _strided(a: np.ndarray):
    """(flat, row step, column step) of a 2-D C-contiguous array or of a transposed one, else None."""
    if a.flags.c_contiguous:
        return a.reshape(-1), a.shape[1], 1
    if a.T.flags.c_contiguous:
        return a.T.reshape(-1), 1, a.shape[0]
    return None


def small_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, ws: ConvWorkspace) -> bool:
    """out (M, N) = a (M, K) @ b (K, N) by blocked.py's GEMM when it is small but not tiny
    (BLAS_SERIAL_BELOW to BLOCKED_GEMM_MAX_MACS multiply-adds) and every array is float32 or
    float64, C-contiguous or a transpose of one (out C-contiguous); returns False, doing
    nothing, otherwise."""
    M, K = a.shape
    N = b.shape[1]
    macs = M * N * K
    if (not BLAS_SERIAL_BELOW <= macs <= BLOCKED_GEMM_MAX_MACS or out.dtype not in (np.float32, np.float64)
            or a.dtype != out.dtype or b.dtype != out.dtype or not out.flags.c_contiguous):
        return False
    sa, sb = _strided(a), _strided(b)
    if sa is None or sb is None:
        return False
    lanes = 64 // out.itemsize  # a tile's columns
    threads = numba.get_num_threads()
    packed = ws.get("gemm_b", K * (-(-N // lanes) * lanes), out.dtype)
    scratch = ws.get("gemm_acc", threads * 4 * lanes, out.dtype).reshape(threads, 4 * lanes)
    (fa, am, ak), (fb, bk, bn) = sa, sb
    blocked_gemm(fa, 0, am, ak, fb, bk, bn, out.reshape(-1), M, N, K, packed, scratch)
    return True
