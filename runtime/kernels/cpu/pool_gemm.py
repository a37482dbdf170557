"""GEMMs in Numba's thread pool: NumPy's own OpenBLAS, called single-threaded from each of Numba's
threads on a share of the product (rows, columns, stacked matrices or the K sum), instead of
``np.matmul`` handing the whole product to OpenBLAS's separate pool.

Why: the two pools take turns on the same cores. After each parallel kernel Numba's OpenMP workers
busy-wait for the next (GOMP_SPINCOUNT), and an OpenBLAS GEMM that starts meanwhile shares a core
with a spinning worker. Measured on 2 cores (2 threads, median of 30, a small parallel kernel before
each GEMM): with libgomp's default spin, np.matmul took 8.65 ms on (100352 x 64) @ (64 x 32) and
12.03 ms on (6272 x 576) @ (576 x 128), this module 4.26 and 5.76 ms; with the short spin cnnlang
had set instead (1000), 4.60 and 5.68 ms against 3.58 and 5.43. Alone, without the kernel before
it, each GEMM takes the same time either way. With every large GEMM here, nothing stands against
a long spin, which the many small kernels of a LeNet-5 training step need (the workers stay awake
between them; cnnlang/environment.py).

It calls the ILP64 CBLAS of the ``scipy-openblas64`` library that NumPy's wheels bundle (built with
its own pthreads, not OpenMP), with OpenBLAS set to one thread for the duration. Where NumPy links
another BLAS, or ``CNNLANG_POOL_GEMM=0`` is set, :func:`matmul` is np.matmul.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .small_gemm import BLAS_SERIAL_BELOW  # (OpenBLAS runs a smaller product on the caller anyway)

#: A product whose K is this many times its larger side, with K the outer axis of both operands
#: (a weight gradient: dy^T x over every pixel), sums K in parts, one per thread, rather than each
#: thread reading all of K for half the rows: (64 x 100352) @ (100352 x 32) 3.62 against 4.54 ms
#: (2 threads). Split so, fc6's inference (8 x 25088) @ (25088 x 4096, the weight's transpose)
#: took 46.9 ms against 36.6 by columns: each part of K would cut every weight row in two.
K_SPLIT_RATIO = 4

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_I32, _I64, _BYTE_POINTER = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()


def _call_gemm(float_type: ir.Type):
    """An intrinsic calling ``cblas_?gemm`` (ILP64, row-major) through its address, given as an
    integer argument: no address is baked into the compiled code, so the kernel caches."""

    @intrinsic
    def call(typingctx, fn, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        signature = types.void(fn, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

        def codegen(context, builder, sig, args):
            fn_type = ir.FunctionType(ir.VoidType(), [_I32, _I32, _I32, _I64, _I64, _I64, float_type, _BYTE_POINTER,
                                                      _I64, _BYTE_POINTER, _I64, float_type, _BYTE_POINTER, _I64])
            pointer = builder.inttoptr(args[0], fn_type.as_pointer())

            def scalar(value):
                return builder.fptrunc(value, float_type) if float_type != ir.DoubleType() else value

            builder.call(pointer, [
                ir.Constant(_I32, _ROW_MAJOR), builder.trunc(args[1], _I32), builder.trunc(args[2], _I32),
                args[3], args[4], args[5], scalar(args[6]), builder.inttoptr(args[7], _BYTE_POINTER), args[8],
                builder.inttoptr(args[9], _BYTE_POINTER), args[10], scalar(args[11]),
                builder.inttoptr(args[12], _BYTE_POINTER), args[13]])
            return context.get_dummy_value()

        return signature, codegen

    return call


_sgemm = _call_gemm(ir.FloatType())
_dgemm = _call_gemm(ir.DoubleType())


@njit(parallel=True, cache=True, _nrt=False)
def _gemm_tasks(gemms, double, ta, tb, items, chunks, split, M, N, K, pa, sa, lda, pb, sb, ldb, pc, sc, ldc,
                itemsize):  # pragma: no cover - compiled
    """C_i = op(A_i) op(B_i) for ``items`` stacked products, each cut into ``chunks`` tasks: row
    blocks (split 0), column blocks (1) or K blocks (2, each into its own C_i: the caller passes
    the partial sums' buffer as C and adds them). Pointers and strides in bytes except the
    leading dimensions (elements)."""
    for task in prange(items * chunks):
        i, j = task // chunks, task % chunks
        a, b, c = pa + i * sa, pb + i * sb, pc + i * sc
        m, n, k = M, N, K
        if split == 0:
            lo, hi = j * M // chunks, (j + 1) * M // chunks
            m = hi - lo
            a += lo * itemsize * (lda if ta == _NO_TRANS else 1)
            c += lo * ldc * itemsize
        elif split == 1:
            lo, hi = j * N // chunks, (j + 1) * N // chunks
            n = hi - lo
            b += lo * itemsize * (1 if tb == _NO_TRANS else ldb)
            c += lo * itemsize
        else:
            lo, hi = j * K // chunks, (j + 1) * K // chunks
            k = hi - lo
            a += lo * itemsize * (1 if ta == _NO_TRANS else lda)
            b += lo * itemsize * (ldb if tb == _NO_TRANS else 1)
            c = pc + task * M * ldc * itemsize
        if m == 0 or n == 0:
            continue
        if double:
            _dgemm(gemms[1], ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc)
        else:
            _sgemm(gemms[0], ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc)


class _OpenBLAS:
    """NumPy's OpenBLAS: its GEMMs' addresses, and its thread count."""

    def __init__(self, library: ctypes.CDLL):
        self.gemms = np.array([ctypes.cast(library.scipy_cblas_sgemm64_, ctypes.c_void_p).value,
                               ctypes.cast(library.scipy_cblas_dgemm64_, ctypes.c_void_p).value], np.int64)
        self.get_threads = library.scipy_openblas_get_num_threads64_
        self.set_threads = library.scipy_openblas_set_num_threads64_
        self.get_threads.restype, self.set_threads.argtypes = ctypes.c_int, [ctypes.c_int]


def _find_openblas() -> _OpenBLAS | None:
    """NumPy's OpenBLAS if it is scipy-openblas64 built with its own threads (not OpenMP), or None."""
    if os.environ.get("CNNLANG_POOL_GEMM", "1") == "0":
        return None
    candidates = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
    try:
        with open("/proc/self/maps") as maps:
            candidates += sorted({line.split()[-1] for line in maps if "openblas" in line and ".so" in line})
    except OSError:
        pass
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
            if library.scipy_openblas_get_parallel64_() == 1:  # 0 sequential, 1 pthreads, 2 OpenMP
                return _OpenBLAS(library)
        except (OSError, AttributeError):
            continue
    return None


_OPENBLAS = _find_openblas()


def available() -> bool:
    """Whether :func:`matmul` runs in Numba's pool here (else it is np.matmul)."""
    return _OPENBLAS is not None


def _operand(a: np.ndarray) -> tuple[int, int] | None:
    """(CBLAS transpose flag, leading dimension) of the last two axes of ``a``, or None."""
    size = a.itemsize
    rows, cols = a.shape[-2:]
    row_step, col_step = a.strides[-2:]
    if (col_step == size or cols == 1) and row_step % size == 0 and row_step >= max(cols, 1) * size:
        return _NO_TRANS, row_step // size
    if (row_step == size or rows == 1) and col_step % size == 0 and col_step >= max(rows, 1) * size:
        return _TRANS, col_step // size
    return None


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` for 2-D operands or equally stacked 3-D ones, float32 or
    float64, each matrix row- or column-major with any leading dimension (a transpose or a column
    slice), ``out`` row-major and apart from both: run in Numba's pool where that is available and
    the product is not small, else by np.matmul. Returns ``out``."""
    threads = numba.get_num_threads()
    if (_OPENBLAS is None or threads < 2 or not a.ndim == b.ndim == out.ndim or a.ndim not in (2, 3)
            or (a.ndim == 3 and not a.shape[0] == b.shape[0] == out.shape[0])):
        return np.matmul(a, b, out=out)
    M, K = a.shape[-2:]
    N = b.shape[-1]
    items = a.shape[0] if a.ndim == 3 else 1
    dtype = out.dtype
    if (items * M * N * K < BLAS_SERIAL_BELOW or dtype not in (np.float32, np.float64) or a.dtype != dtype
            or b.dtype != dtype):
        return np.matmul(a, b, out=out)
    fa, fb, fc = _operand(a), _operand(b), _operand(out)
    if (fa is None or fb is None or fc is None or fc[0] != _NO_TRANS or min(a.strides + b.strides + out.strides) < 0
            or np.may_share_memory(out, a) or np.may_share_memory(out, b)):
        return np.matmul(a, b, out=out)
    size = dtype.itemsize
    stacked = (a.strides[0], b.strides[0], out.strides[0]) if a.ndim == 3 else (0, 0, 0)
    chunks, split, target = max(1, -(-threads // items)), 0, out
    if chunks > 1:
        if K >= K_SPLIT_RATIO * max(M, N) and items == 1 and fa[0] == _TRANS and fb[0] == _NO_TRANS:
            split, target = 2, np.empty((chunks, M, N), dtype)
        elif N > M:
            split = 1
    c, c_step, ldc = (target.ctypes.data, 0, N) if split == 2 else (out.ctypes.data, stacked[2], fc[1])
    # One OpenBLAS thread per call while Numba's threads make the calls. Its pthreads build has one count for
    # all threads (openblas_set_num_threads_local, tried first, changed it for every thread), so it is set
    # here, around the region; two Python threads doing this at once could leave it at 1 (slower, not wrong).
    blas_threads = _OPENBLAS.get_threads()
    _OPENBLAS.set_threads(1)
    try:
        _gemm_tasks(_OPENBLAS.gemms, size == 8, fa[0], fb[0], items, chunks, split, M, N, K, a.ctypes.data,
                    stacked[0], fa[1], b.ctypes.data, stacked[1], fb[1], c, c_step, ldc, size)
    finally:
        _OPENBLAS.set_threads(blas_threads)
    if split == 2:
        np.sum(target, axis=0, out=out)
    return out
