"""Element-wise activations, PReLU and softmax on the GPU, as runtime/kernels/cpu/activation.py
defines them: flat arrays for the element-wise kernels (one thread per value), rows x C for
softmax (one block per row, the channel axis shared out among its threads and reduced in shared
memory: no atomics, so every run sums in the same order).

Backward passes use the forward output (relu' = [y > 0], tanh' = 1 - y^2, sigmoid' = y (1 - y));
PReLU's uses its input. ``activate`` is a device function, so other kernels (add's epilogue)
apply the same activation in their own pass.
"""

from __future__ import annotations

import math

from numba import cuda, float64

from ..cpu.activation import RELU, SIGMOID, TANH
from ..cpu.epilogue import NONE
from .launch import MAX_THREADS, elementwise, reduction_threads
from .reduce import tree


@cuda.jit(device=True, inline=True)
def activate(v, kind, zero, one):  # pragma: no cover - device code
    """f(v) for kind RELU, TANH, SIGMOID or NONE (the CPU kernels' codes); ``zero`` and ``one``
    in v's type keep the result in it (float32 stays float32). relu keeps NaN, as the CPU's."""
    if kind == RELU:
        return v if (v > zero or v != v) else zero
    if kind == TANH:
        return math.tanh(v)
    if kind == SIGMOID:
        return one / (one + math.exp(-v))
    return v


@cuda.jit
def _activation_forward(x, out, kind):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        zero = x.dtype.type(0)
        out[i] = activate(x[i], kind, zero, zero + 1)


@cuda.jit
def _activation_backward(y, dy, dx, kind):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < y.size:
        v = y[i]
        zero = y.dtype.type(0)
        if kind == RELU:
            dx[i] = dy[i] if v > zero else zero
        elif kind == TANH:
            dx[i] = dy[i] * (zero + 1 - v * v)
        else:
            dx[i] = dy[i] * v * (zero + 1 - v)


def activation_forward(x, out, kind: int) -> None:
    """out = f(x) on flat device arrays (out may be x)."""
    blocks, threads = elementwise(x.size)
    _activation_forward[blocks, threads](x, out, kind)


def activation_backward(y, dy, dx, kind: int) -> None:
    """dx = dy * f'(x), through the forward output y (flat device arrays)."""
    blocks, threads = elementwise(y.size)
    _activation_backward[blocks, threads](y, dy, dx, kind)


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
