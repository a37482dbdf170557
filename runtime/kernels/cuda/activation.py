"""Element-wise activations, PReLU and softmax on the GPU, as runtime/kernels/cpu/activation.py
defines them: flat arrays for the element-wise kernels (one thread per value), rows x C for
softmax (one block per row, the channel axis shared out among its threads and reduced in shared
memory: no atomics, so every run sums in the same order).

Backward passes use the forward output (relu' = [y > 0], tanh' = 1 - y^2, sigmoid' = y (1 - y));
PReLU's uses its input. The activation itself is the GEMM epilogue's device function
(runtime/kernels/cuda/epilogue.py), built per dtype, as add's kernel uses it too.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float64

from .epilogue import RELU, SIGMOID, TANH, activation_function
from .launch import MAX_THREADS, elementwise, reduction_threads
from .reduce import tree

#: the element-wise activations' kernel codes (the GEMM epilogue's), by layer op
KINDS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


@functools.cache
def _activation_kernels(dtype: str):
    """(forward, backward) kernels for ``dtype`` ("f" or "d"), with the GEMM epilogue's device
    function: one activation definition for every kernel that applies one."""
    activate = activation_function(dtype)
    one = np.dtype(dtype).type(1)
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def forward(x, out, code):  # pragma: no cover - device code
        i = cuda.grid(1)
        if i < x.size:
            out[i] = activate(x[i], code)

    @cuda.jit
    def backward(y, dy, dx, code):  # pragma: no cover - device code
        i = cuda.grid(1)
        if i < y.size:
            v = y[i]
            if code == RELU:
                dx[i] = dy[i] if v > zero else zero
            elif code == TANH:
                dx[i] = dy[i] * (one - v * v)
            else:
                dx[i] = dy[i] * v * (one - v)

    return forward, backward


def activation_forward(x, out, code: int) -> None:
    """out = f(x) on flat device arrays (out may be x); ``code`` from :data:`KINDS`."""
    blocks, threads = elementwise(x.size)
    _activation_kernels(x.dtype.char)[0][blocks, threads](x, out, code)


def activation_backward(y, dy, dx, code: int) -> None:
    """dx = dy * f'(x), through the forward output y (flat device arrays)."""
    blocks, threads = elementwise(y.size)
    _activation_kernels(y.dtype.char)[1][blocks, threads](y, dy, dx, code)


@cuda.jit
def _prelu_forward(x, slope, out):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        v = x[i]
        out[i] = v if v > 0 else v * slope[i % slope.size]


@cuda.jit
def _prelu_input_grad(x, dy, slope, dx):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        dx[i] = dy[i] if x[i] > 0 else dy[i] * slope[i % slope.size]


@cuda.jit
def _prelu_slope_terms(x, dy, terms):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        terms[i] = x.dtype.type(0) if x[i] > 0 else dy[i] * x[i]


def prelu_forward(x, slope, out) -> None:
    """out = x where x > 0, else slope * x; flat arrays whose last axis was the channel, slope of
    size 1 (shared) or C."""
    blocks, threads = elementwise(x.size)
    _prelu_forward[blocks, threads](x, slope, out)


def prelu_input_grad(x, dy, slope, dx) -> None:
    """dx = dy where x > 0, else slope * dy (flat arrays)."""
    blocks, threads = elementwise(x.size)
    _prelu_input_grad[blocks, threads](x, dy, slope, dx)


def prelu_slope_terms(x, dy, terms) -> None:
    """terms = dy * x where x <= 0, else 0: what the slope gradient sums per channel."""
    blocks, threads = elementwise(x.size)
    _prelu_slope_terms[blocks, threads](x, dy, terms)


@cuda.jit
def _softmax_forward(x, out):  # pragma: no cover - device code
    shared = cuda.shared.array(MAX_THREADS, float64)
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n = cuda.blockDim.x
    channels = x.shape[1]
    top = x[r, 0]
    for c in range(t, channels, n):
        if x[r, c] > top:
            top = x[r, c]
    shared[t] = top
    cuda.syncthreads()
    tree(shared, t, n, True)
    top = x.dtype.type(shared[0])
    cuda.syncthreads()
    total = 0.0
    for c in range(t, channels, n):
        e = math.exp(x[r, c] - top)
        out[r, c] = e
        total += e
    shared[t] = total
    cuda.syncthreads()
    tree(shared, t, n, False)
    scale = x.dtype.type(1.0 / shared[0])
    for c in range(t, channels, n):
        out[r, c] *= scale


@cuda.jit
def _softmax_backward(y, dy, dx):  # pragma: no cover - device code
    shared = cuda.shared.array(MAX_THREADS, float64)
    r = cuda.blockIdx.x
    t = cuda.threadIdx.x
    n = cuda.blockDim.x
    channels = y.shape[1]
    dot = 0.0
    for c in range(t, channels, n):
        dot += dy[r, c] * y[r, c]
    shared[t] = dot
    cuda.syncthreads()
    tree(shared, t, n, False)
    dot_t = y.dtype.type(shared[0])
    for c in range(t, channels, n):
        dx[r, c] = y[r, c] * (dy[r, c] - dot_t)


def softmax_forward(x, out) -> None:
    """out[r] = exp(x[r] - max x[r]) / sum(...) for each row of rows x C device arrays."""
    if x.shape[0]:
        _softmax_forward[x.shape[0], reduction_threads(x.shape[1])](x, out)


def softmax_backward(y, dy, dx) -> None:
    """dx[r] = y[r] * (dy[r] - <dy[r], y[r]>) for each row (y is the forward output)."""
    if y.shape[0]:
        _softmax_backward[y.shape[0], reduction_threads(y.shape[1])](y, dy, dx)
