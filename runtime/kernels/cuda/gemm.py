"""The GPU's GEMM: C = op(A) @ op(B) (+ C) (+ bias, activation), two implementations chosen per call.

* **cuBLAS through CuPy**, when CuPy imports and the operands are real device arrays: CuPy wraps
  Numba's arrays through ``__cuda_array_interface__`` (no copies) and both use the legacy default
  stream, so the call is ordered with our kernels. Bias and activation follow in one small
  kernel (runtime/kernels/cuda/epilogue.py). CuPy keeps float32 arithmetic (no TF32) unless the
  user sets CUPY_TF32=1.
* **A tiled shared-memory kernel** in numba.cuda, which runs wherever numba-cuda runs (and in its
  simulator). A block computes a BM x BN tile of C, stepping through K in slices of BK: the
  block's threads load the A and B slices into shared memory (reading global memory along its
  contiguous axis, so loads coalesce whatever the transposes), then each thread accumulates a
  TM x TN register tile. Thread (tx, ty) owns rows ty + i*(BM/TM) and columns tx + j*(BN/TN):
  interleaved, so a warp reads consecutive shared-memory words (no bank conflicts) and stores
  consecutive columns of C. The epilogue (accumulate, bias, activation) runs on the registers.
  Default tile 64 x 64 x 16 with 4 x 4 per thread: 256 threads, every value read from shared
  memory feeds 4 multiply-adds, and 8 KiB (float32) or 16 KiB (float64) of shared memory per
  block leaves room for several blocks per multiprocessor. Unmeasured (no GPU was lent):
  :data:`TILE` can be changed per call, so benchmarks/bench_cuda_conv.py measures alternatives. Edges are
  handled by bounds checks on load and store: any shape is correct.

:func:`conv_gemm` runs the same tiled kernel as an implicit-GEMM convolution: its A tiles are
gathered from the input image (im2col's columns, never written out).

Which one runs is decided per call by :func:`gemm_policy` ("auto": cuBLAS when usable; "numba";
"cublas"), from ``CNNLANG_GEMM`` or :func:`set_gemm_policy`, and counted in :func:`gemm_record`
(``bench --device cuda`` reports it). No GPU was lent while this was written: neither is
measured here yet (benchmarks/ on a GPU machine does).
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from typing import Any

import numpy as np
from numba import cuda
from numba.np import numpy_support

from cnnlang.errors import UsageError
from .epilogue import NONE, bias_activation, placeholder, store_function

#: (BM, BN, BK, TM, TN): block tile rows x columns, K slice, per-thread register tile.
TILE = (64, 64, 16, 4, 4)
POLICIES = ("auto", "numba", "cublas")

#: GEMM calls per implementation: "cublas", "numba" (the tiled kernel), "numba-implicit" (the
#: tiled kernel reading a convolution's columns straight from its input)
_record: Counter = Counter()
_policy = os.environ.get("CNNLANG_GEMM", "auto")


def gemm_record() -> dict[str, int]:
    """How many GEMM calls each implementation ran since the last reset (see ``_record``)."""
    return dict(_record)


def reset_gemm_record() -> None:
    _record.clear()


def gemm_policy() -> str:
    return _policy


def set_gemm_policy(policy: str) -> None:
    """"auto" (cuBLAS when CuPy is usable, else the numba kernel), "numba" or "cublas"."""
    global _policy
    if policy not in POLICIES:
        raise UsageError(f"unknown GEMM {policy!r}; choose one of {', '.join(POLICIES)}")
    _policy = policy


@functools.cache
def _cupy():
    try:
        import cupy
    except Exception:  # not installed, or installed without a usable CUDA
        return None
    return cupy


def _use_cublas(*arrays) -> bool:
    policy = _policy
    if policy not in POLICIES:
        raise UsageError(f"CNNLANG_GEMM={policy!r} is not one of {', '.join(POLICIES)}")
    if policy == "numba":
        return False
    usable = _cupy() is not None and all(hasattr(a, "__cuda_array_interface__") for a in arrays)
    if policy == "cublas" and not usable:
        raise UsageError("CNNLANG_GEMM=cublas needs CuPy (pip install cupy-cuda12x) and device arrays on a GPU")
    return usable


def gemm(
    a: Any,
    b: Any,
    out: Any = None,
    trans_a: bool = False,
    trans_b: bool = False,
    accumulate: bool = False,
    bias: Any = None,
    activation: int = NONE,
    tile: tuple[int, int, int, int, int] | None = None,
) -> Any:
    """out (M x N) = f(op(a) @ op(b) (+ out if ``accumulate``) + bias), op(x) = x.T when its
    ``trans_`` flag is set. 2-D device arrays of one float dtype (float32 or float64), any row
    strides (column blocks, channel slices); ``bias`` is (N,) or None; ``activation`` an
    epilogue code (runtime/kernels/cuda/epilogue.py). Returns ``out`` (allocated when None)."""
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k2, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    dtype = np.dtype(a.dtype)
    if dtype not in (np.float32, np.float64) or b.dtype != dtype:
        raise TypeError(f"gemm: float32 or float64 operands of one dtype expected, got {a.dtype} and {b.dtype}")
    if k != k2:
        raise ValueError(f"gemm: inner sizes differ: {tuple(a.shape)} and {tuple(b.shape)} (trans {trans_a}, {trans_b})")
    if out is None:
        if accumulate:
            raise ValueError("gemm: accumulate needs out")
        out = cuda.device_array((m, n), dtype)
    if tuple(out.shape) != (m, n) or out.dtype != dtype:
        raise ValueError(f"gemm: out must be a {dtype} array of shape {(m, n)}, got {out.dtype} {tuple(out.shape)}")
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"gemm: bias must have shape {(n,)}, got {tuple(bias.shape)}")
    if m == 0 or n == 0:
        return out
    if _use_cublas(a, b, out):
        _cublas(a, b, out, trans_a, trans_b, accumulate, bias, activation)
        _record["cublas"] += 1
        return out
    # (k == 0 needs no case of its own: the kernel's K loop is empty, the epilogue runs on zeros)
    source = "columns" if trans_a else "rows"
    _launch(source, a, (0,), b, out, m, n, k, trans_b, accumulate, bias, activation, tile)
    _record["numba"] += 1
    return out


def conv_gemm(x, geometry: tuple[int, ...], weight, out, bias=None, activation: int = NONE, tile=None) -> None:
    """Implicit-GEMM convolution of one group: out (N*Ho*Wo, Og) = f(cols(x) @ weight^T + bias)
    where cols(x) is im2col's (runtime/kernels/cuda/im2col.py) matrix of group ``geometry[15]``,
    read from x (N, H, W, C) while loading the tiles instead of being written out. ``weight`` is
    the group's column-order weight (Og, KH*KW*Cg); ``geometry`` im2col's tuple plus the group."""
    n_, h, w, c, ho, wo, kh, kw = geometry[:8]
    m, k = n_ * ho * wo, kh * kw * (c // geometry[14])
    if tuple(weight.shape)[1] != k or tuple(out.shape) != (m, weight.shape[0]):
        raise ValueError(f"conv_gemm: weight {tuple(weight.shape)} and out {tuple(out.shape)} do not fit the geometry")
    _launch("image", x, geometry, weight, out, m, weight.shape[0], k, True, False, bias, activation, tile)
    _record["numba-implicit"] += 1


def _launch(source, a, geometry, b, out, m, n, k, trans_b, accumulate, bias, activation, tile) -> None:
    bm, bn, bk, tm, tn = TILE if tile is None else tile
    kernel = _tiled_kernel(out.dtype.char, source, bool(trans_b), bm, bn, bk, tm, tn)
    blocks = ((m + bm - 1) // bm, (n + bn - 1) // bn)
    has_bias = bias is not None
    kernel[blocks, (bn // tn, bm // tm)](
        a, geometry, b, out, m, n, k, accumulate, bias if has_bias else placeholder(out.dtype), has_bias, activation
    )


def _cublas(a, b, out, trans_a, trans_b, accumulate, bias, activation) -> None:
    cp = _cupy()
    left, right = cp.asarray(a), cp.asarray(b)
    left = left.T if trans_a else left
    right = right.T if trans_b else right
    target = cp.asarray(out)
    if target.flags.c_contiguous and not accumulate:
        cp.matmul(left, right, out=target)
        bias_activation(out, bias, activation)
        return
    # cuBLAS writes contiguous results only, and cannot add its result into ours: a temporary from
    # CuPy's memory pool, then one pass that adds, biases and activates into out.
    product = cp.matmul(left, right)
    # (no sync: CuPy and Numba share the legacy default stream)
    bias_activation(out, bias, activation, src=cuda.as_cuda_array(product, sync=False), accumulate=accumulate)


@cuda.jit(device=True)
def _from_rows(a, geometry, r, kk):  # pragma: no cover - compiled
    return a[r, kk]


@cuda.jit(device=True)
def _from_columns(a, geometry, r, kk):  # pragma: no cover - compiled
    return a[kk, r]


@functools.cache
def _from_image(dtype: str):
    """A's element (r, kk) for the implicit GEMM: im2col's column kk of output pixel r, in group
    ``geometry[15]``, read from x (N, H, W, C); 0 in the padding."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def load(x, geometry, r, kk):  # pragma: no cover - compiled
        N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G, g = geometry
        Cg = C // G
        kh = kk // (KW * Cg)
        rest = kk - kh * (KW * Cg)
        kw = rest // Cg
        ow = r % Wo
        oh = (r // Wo) % Ho
        ih = oh * sh - pt + kh * dh
        iw = ow * sw - pl + kw * dw
        if ih < 0 or ih >= H or iw < 0 or iw >= W:
            return zero
        return x[r // (Wo * Ho), ih, iw, g * Cg + rest - kw * Cg]

    return load


@functools.cache
def _tiled_kernel(dtype: str, source: str, trans_b: bool, bm: int, bn: int, bk: int, tm: int, tn: int):
    """The tiled kernel for one dtype, A source, B transpose and tile (compiled on first launch).
    A comes from "rows" (an M x K array), "columns" (K x M: A transposed) or "image" (implicit
    GEMM: :func:`_from_image`). Launch with blocks (ceil(M/bm), ceil(N/bn)), threads
    (bn/tn, bm/tm)."""
    if bm % tm or bn % tn:
        raise ValueError(f"gemm: tile {bm}x{bn} does not split into {tm}x{tn} per thread")
    nbtype = numpy_support.from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    store = store_function(dtype)
    load_a = {"rows": _from_rows, "columns": _from_columns}.get(source) or _from_image(dtype)
    trans_a = source == "columns"
    tx_count, ty_count = bn // tn, bm // tm
    threads = tx_count * ty_count

    @cuda.jit
    def kernel(a, geometry, b, c, m, n, k, accumulate, bias, has_bias, code):  # pragma: no cover - compiled
        a_tile = cuda.shared.array((bk, bm), nbtype)  # [kk, row]
        b_tile = cuda.shared.array((bk, bn), nbtype)  # [kk, column]
        acc = cuda.local.array((tm, tn), nbtype)
        a_reg = cuda.local.array(tm, nbtype)
        b_reg = cuda.local.array(tn, nbtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * tx_count + tx
        row0 = cuda.blockIdx.x * bm
        col0 = cuda.blockIdx.y * bn
        for i in range(tm):
            for j in range(tn):
                acc[i, j] = zero
        for k0 in range(0, k, bk):
            # Consecutive threads take consecutive addresses of the operand as stored (for an
            # image: consecutive channels).
            for e in range(tid, bm * bk, threads):
                if trans_a:  # a is K x M
                    r = e % bm
                    kk = e // bm
                else:  # a is M x K
                    kk = e % bk
                    r = e // bk
                v = zero
                if row0 + r < m and k0 + kk < k:
                    v = load_a(a, geometry, row0 + r, k0 + kk)
                a_tile[kk, r] = v
            for e in range(tid, bn * bk, threads):
                if trans_b:  # b is N x K
                    kk = e % bk
                    s = e // bk
                else:  # b is K x N
                    s = e % bn
                    kk = e // bn
                v = zero
                if col0 + s < n and k0 + kk < k:
                    v = b[col0 + s, k0 + kk] if trans_b else b[k0 + kk, col0 + s]
                b_tile[kk, s] = v
            cuda.syncthreads()
            for kk in range(bk):
                for i in range(tm):
                    a_reg[i] = a_tile[kk, ty + i * ty_count]
                for j in range(tn):
                    b_reg[j] = b_tile[kk, tx + j * tx_count]
                for i in range(tm):
                    for j in range(tn):
                        acc[i, j] += a_reg[i] * b_reg[j]
            cuda.syncthreads()
        for i in range(tm):
            r = row0 + ty + i * ty_count
            if r < m:
                for j in range(tn):
                    s = col0 + tx + j * tx_count
                    if s < n:
                        store(c, r, s, acc[i, j], accumulate, bias, has_bias, code)

    return kernel
