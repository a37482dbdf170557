"""What follows a GEMM on the GPU: bias per column and an activation, as device functions the
GEMM kernels call on their accumulators (no extra pass), and as one small kernel for the results
of cuBLAS (which cannot call our code).

Activations are codes, not names, so one compiled kernel serves all of them (the branch is
uniform across the grid). The device functions are built per dtype: a literal ``1`` or ``0.5``
in a float32 expression would make Numba compute in float64.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda

NONE, RELU, TANH, SIGMOID = 0, 1, 2, 3
_CODES = {None: NONE, "relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}

#: Threads per block of the element-wise kernels here (x along columns, y along rows).
BLOCK = (32, 8)


def activation_code(name: str | None) -> int:
    """The kernel code of an activation ("relu", "tanh", "sigmoid") or None."""
    try:
        return _CODES[name]
    except KeyError:
        raise ValueError(f"no fused activation {name!r}; known: relu, tanh, sigmoid") from None


@functools.cache
def activation_function(dtype: str):
    """A device function f(v, code) in ``dtype`` ("f" or "d"). relu lets NaN through, as the
    CPU's does; sigmoid is 1 / (1 + exp(-v)), PyTorch's formula."""
    one = np.dtype(dtype).type(1)
    zero = np.dtype(dtype).type(0)

    @cuda.jit(device=True)
    def activate(v, code):  # pragma: no cover - compiled
        if code == RELU:
            return v if (v > zero or v != v) else zero
        if code == TANH:
            return math.tanh(v)
        if code == SIGMOID:
            return one / (one + math.exp(-v))
        return v

    return activate


@functools.cache
def store_function(dtype: str):
    """A device function store(out, m, n, v, accumulate, bias, has_bias, code): out[m, n] =
    f(v (+ out[m, n]) (+ bias[n])), the last step of every GEMM here."""
    activate = activation_function(dtype)

    @cuda.jit(device=True)
    def store(out, m, n, v, accumulate, bias, has_bias, code):  # pragma: no cover - compiled
        if accumulate:
            v += out[m, n]
        if has_bias:
            v += bias[n]
        out[m, n] = activate(v, code)

    return store


@functools.cache
def epilogue_kernel(dtype: str):
    """out[m, n] = f(src[m, n] + (out[m, n] if accumulate) + bias[n]) over 2-D arrays of any
    strides; ``src`` may be ``out`` itself (then without accumulate)."""
    store = store_function(dtype)

    @cuda.jit
    def kernel(out, src, accumulate, bias, has_bias, code):  # pragma: no cover - compiled
        n, m = cuda.grid(2)
        if m < out.shape[0] and n < out.shape[1]:
            store(out, m, n, src[m, n], accumulate, bias, has_bias, code)

    return kernel


def grid_2d(rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(blocks, threads) covering rows x cols with :data:`BLOCK`, x along the columns."""
    bx, by = BLOCK
    return ((cols + bx - 1) // bx, (rows + by - 1) // by), BLOCK


_PLACEHOLDERS: dict[str, object] = {}


def placeholder(dtype: np.dtype):
    """A one-element device array standing in for an absent bias (kernels need an array)."""
    key = np.dtype(dtype).char
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = cuda.to_device(np.zeros(1, key))
    return _PLACEHOLDERS[key]


def bias_activation(out, bias=None, activation: int = NONE, src=None, accumulate: bool = False) -> None:
    """In place on the 2-D device array ``out`` (rows x columns, any strides): add ``bias``
    (columns,) and apply the activation code; with ``src``, out = f(src (+ out) + bias)."""
    rows, cols = out.shape
    if rows == 0 or cols == 0 or (src is None and bias is None and activation == NONE):
        return
    blocks, threads = grid_2d(rows, cols)
    has_bias = bias is not None
    epilogue_kernel(out.dtype.char)[blocks, threads](
        out, out if src is None else src, accumulate, bias if has_bias else placeholder(out.dtype), has_bias, activation
    )
