"""Element-wise activations and softmax over the channel axis.

The element-wise kernels take flat (1-D, contiguous) views, so one specialisation per dtype
serves every rank. relu runs in Numba. tanh and sigmoid forward use NumPy's ufuncs: they are
SIMD-vectorised (AVX2/AVX-512), while Numba calls the scalar libm tanh/exp for each element
unless Intel's SVML is installed; measured on 64 x 28 x 28 x 6 float32 values, np.tanh takes
0.1 ms and a Numba loop 6.7 ms. sigmoid keeps PyTorch's formula 1 / (1 + exp(-x)) (accurate
relative to tiny outputs, unlike 0.5 + 0.5 tanh(x/2)).

The three backward passes share one kernel selected by ``kind`` (fewer jitted functions
compile faster; the branch is loop-invariant) and use the saved *output*: relu' = [y > 0]
(0 at x = 0, as PyTorch), tanh' = 1 - y^2, sigmoid' = y (1 - y).

Softmax works on rows x C (the channel axis is the last, contiguous one) and subtracts each
row's maximum before exponentiating, so large inputs do not overflow.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

RELU, TANH, SIGMOID = 0, 1, 2
KINDS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


@njit(parallel=True, cache=True, error_model="numpy")
def relu_forward(x, out):  # pragma: no cover - jitted
    """out = max(x, 0) on flat arrays; NaN stays NaN."""
    zero = x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        out[i] = v if (v > zero or v != v) else zero


def activation_forward(x: np.ndarray, out: np.ndarray, kind: int) -> None:
    """out = f(x) element-wise on arrays of one dtype (flat for RELU; tanh and sigmoid are NumPy
    ufuncs and take any layout, out may be x); ``kind`` is RELU, TANH or SIGMOID."""
    if kind == RELU:
        relu_forward(x, out)
    elif kind == TANH:
        np.tanh(x, out=out)
    else:
        with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88 (float32): sigmoid 0
            np.exp(np.negative(x, out=out), out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)


@njit(parallel=True, cache=True, error_model="numpy")
def activation_backward(y, dy, dx, kind):  # pragma: no cover - jitted
    """dx = dy * f'(x), written through the forward output y = f(x) (flat arrays)."""
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    for i in prange(y.size):
        v = y[i]
        if kind == RELU:
            dx[i] = dy[i] if v > zero else zero
        elif kind == TANH:
            dx[i] = dy[i] * (one - v * v)
        else:
            dx[i] = dy[i] * v * (one - v)


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_forward(x, out):  # pragma: no cover - jitted
    """out[r] = exp(x[r] - max x[r]) / sum(...) for each row r of a rows x C array."""
    rows, channels = x.shape
    for r in prange(rows):
        top = x[r, 0]
        for c in range(1, channels):
            if x[r, c] > top:
                top = x[r, c]
        total = 0.0
        for c in range(channels):
            e = math.exp(x[r, c] - top)
            out[r, c] = e
            total += e
        scale = x.dtype.type(1.0 / total)
        for c in range(channels):
            out[r, c] *= scale


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_backward(y, dy, dx):  # pragma: no cover - jitted
    """dx[r] = y[r] * (dy[r] - <dy[r], y[r]>) for each row r (y is the forward output)."""
    rows, channels = y.shape
    for r in prange(rows):
        dot = 0.0
        for c in range(channels):
            dot += dy[r, c] * y[r, c]
        dot_t = y.dtype.type(dot)
        for c in range(channels):
            dx[r, c] = y[r, c] * (dy[r, c] - dot_t)
