"""Fused epilogues for optimised inference: what follows a GEMM or a residual sum, in one pass.

``bias_activation`` adds a per-column bias and applies an activation to a rows x C block (the
GEMM output of a conv or fc layer, while it is still in cache). The block may be a strided view
(a slice of a concat buffer: unit stride along C, any row stride), so a producer can write
straight into its channels of a concatenation. ``add_activation`` sums residual inputs and
applies relu in one pass over flat arrays; ``bias_residual_activation`` does the bias, a residual
sum and the activation of a conv's output in one pass (``fuse-residual``).

relu runs inside the Numba loop. In float32, tanh and sigmoid run inside it too (the
vectorisable ``tanh32``/``sigmoid32`` of runtime/kernels/cpu/activation.py) on C-contiguous
blocks; float64 and strided blocks apply them after the bias loop with
``activation_forward`` (NumPy's ufuncs in float64: exact, and vectorised, unlike Numba's scalar
libm calls without Intel's SVML).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .activation import CONTRACT, KINDS, RELU, SIGMOID, TANH, activation_forward, sigmoid32, tanh32
from .merge import add2

#: ``kind`` for "no activation" (KINDS has RELU, TANH, SIGMOID).
NONE = -1


def activation_kind(name: str | None) -> int:
    """The kernel code for an activation name ("relu", "tanh", "sigmoid") or None."""
    return NONE if name is None else KINDS[name]


@njit(parallel=True, cache=True, error_model="numpy")
def _bias_relu(y, bias, has_bias, relu):  # pragma: no cover - jitted
    """y[r, c] = f(y[r, c] + bias[c]) for a C-contiguous rows x C block; f is relu or the
    identity. NaN passes through relu, as in relu_forward."""
    rows, channels = y.shape
    zero = y.dtype.type(0)
    for r in prange(rows):
        for c in range(channels):
            v = y[r, c]
            if has_bias:
                v += bias[c]
            if relu and not (v > zero or v != v):
                v = zero
            y[r, c] = v


@njit(parallel=True, cache=True, error_model="numpy")
def _bias_relu_rows(flat, rows, channels, stride, bias, has_bias, relu):  # pragma: no cover - jitted
    """The same for a strided block: row r is flat[r*stride : r*stride + channels]. (Row slices
    of one contiguous array vectorise; a 2-D array of unknown strides does not: measured 2-6x
    slower. For a contiguous block the per-row slices cost more than they save, hence two.)"""
    zero = flat.dtype.type(0)
    for r in prange(rows):
        row = flat[r * stride : r * stride + channels]
        if has_bias:
            for c in range(channels):
                row[c] += bias[c]
        if relu:
            for c in range(channels):
                v = row[c]
                row[c] = v if (v > zero or v != v) else zero


#: Elements per task of the float32 tanh/sigmoid epilogue (a whole number of rows; L1-sized).
SMOOTH_BLOCK = 4096


@njit(parallel=True, cache=True, error_model="numpy", fastmath=CONTRACT)
def _bias_smooth32(flat, block, tiled, has_bias, kind):  # pragma: no cover - jitted
    """flat[i] = f(flat[i] + bias[i % C]), f tanh or sigmoid, on a C-contiguous float32 rows x C
    block seen flat. ``tiled`` is the bias repeated ``block / C`` times (``block`` elements, whole
    rows), so that each task's loop is one flat, vectorisable pass even for C = 6 (a loop over
    the channels of each row runs scalar)."""
    tasks = (flat.size + block - 1) // block
    for t in prange(tasks):
        lo = t * block
        part = flat[lo : min(flat.size, lo + block)]
        add = tiled[: part.size]
        # Loops over slices: indexing flat[i] with i from lo did not vectorise (6.1 ms against
        # 0.64 ms on LeNet-5's c1 output, one thread).
        if kind == TANH:
            if has_bias:
                for i in range(part.size):
                    part[i] = tanh32(part[i] + add[i])
            else:
                for i in range(part.size):
                    part[i] = tanh32(part[i])
        else:
            if has_bias:
                for i in range(part.size):
                    part[i] = sigmoid32(part[i] + add[i])
            else:
                for i in range(part.size):
                    part[i] = sigmoid32(part[i])


def smooth32_arguments(y: np.ndarray, bias: np.ndarray | None, kind: int) -> tuple:
    """The arguments of ``_bias_smooth32`` (or its serial twin) for a C-contiguous float32
    rows x C block ``y``."""
    channels = y.shape[1]
    rows = max(1, SMOOTH_BLOCK // channels)
    tiled = _EMPTY["f"] if bias is None else np.tile(bias, rows)
    return y.reshape(-1), rows * channels, tiled, bias is not None, kind


def bias_activation(y: np.ndarray, bias: np.ndarray | None, kind: int) -> None:
    """In place on ``y`` (rows x C, unit stride along C): add ``bias`` (C,) if given, then the
    activation ``kind`` (NONE, RELU, TANH, SIGMOID)."""
    if y.size == 0:
        return
    if kind in (TANH, SIGMOID) and y.dtype == np.float32 and y.flags.c_contiguous:
        _bias_smooth32(*smooth32_arguments(y, bias, kind))
        return
    if bias is not None or kind == RELU:
        vector = _EMPTY[y.dtype.char] if bias is None else bias
        if y.flags.c_contiguous:
            _bias_relu(y, vector, bias is not None, kind == RELU)
        else:
            flat, stride = row_span(y)
            _bias_relu_rows(flat, y.shape[0], y.shape[1], stride, vector, bias is not None, kind == RELU)
    _activation_after(y, kind)


_EMPTY = {"f": np.empty(0, np.float32), "d": np.empty(0, np.float64)}


def channel_rows(out: np.ndarray, channels: int, who: str) -> np.ndarray:
    """``out`` (N x ... x C) as a (pixels, channels) view with unit stride along channels;
    ValueError when it is neither contiguous nor a channel slice of a contiguous array (what a
    producer writing into its slice of a concat buffer gets)."""
    rows = out.view()
    try:
        rows.shape = (-1, channels)
    except AttributeError:
        rows = None
    if rows is None or not _unit_channels(rows):
        raise ValueError(f"{who}: out must be C-contiguous, or a channel slice of a C-contiguous array")
    return rows


def row_span(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """(a contiguous 1-D view from the first element of ``rows`` to its last, the row stride in
    elements): the rows and what lies between them in the parent array; callers write only the
    rows' own elements through it."""
    if not _unit_channels(rows):
        raise ValueError("rows must have unit stride along channels")
    count, channels = rows.shape
    if count == 0:
        return rows.reshape(-1), channels
    stride = rows.strides[0] // rows.itemsize if count > 1 else channels
    span = (count - 1) * stride + channels
    return np.lib.stride_tricks.as_strided(rows, shape=(span,), strides=(rows.itemsize,)), stride


def _unit_channels(rows: np.ndarray) -> bool:
    # One channel has no stride along channels to speak of (a 1-channel slice has the row's).
    count, channels = rows.shape
    return count == 0 or ((channels == 1 or rows.strides[1] == rows.itemsize) and rows.strides[0] % rows.itemsize == 0)


def _activation_after(y: np.ndarray, kind: int) -> None:
    """tanh or sigmoid in place, after a pass that did the rest (Numba in float32 where y is
    contiguous, NumPy otherwise)."""
    if kind in (TANH, SIGMOID):
        activation_forward(y, y, kind)  # any layout


def add_activation(inputs: list[np.ndarray], out: np.ndarray, kind: int) -> None:
    """out = f(inputs[0] + inputs[1] + ...), element-wise; ``out`` may be one of the inputs.

    Two contiguous inputs of out's dtype, with relu or no activation (a residual block's sum),
    take one parallel pass (np.add runs on one thread); anything else sums with NumPy and applies
    the activation after."""
    contiguous = out.flags.c_contiguous and all(
        x.flags.c_contiguous and x.shape == out.shape and x.dtype == out.dtype for x in inputs
    )
    if kind in (NONE, RELU) and len(inputs) == 2 and contiguous:
        add2(inputs[0].reshape(-1), inputs[1].reshape(-1), out.reshape(-1), kind == RELU)
        return
    np.add(inputs[0], inputs[1], out=out)
    for extra in inputs[2:]:
        out += extra
    if kind == RELU:
        np.maximum(out, 0, out=out)  # NaN stays NaN, as in relu_forward
    else:
        _activation_after(out, kind)


@njit(parallel=True, cache=True, error_model="numpy")
def _bias_residual_relu(y, bias, has_bias, shortcut, relu):  # pragma: no cover - jitted
    """y = f((y + bias) + shortcut) on C-contiguous rows x C blocks, in the order the unfused
    bias epilogue and add compute it (the same float32 results)."""
    rows, channels = y.shape
    zero = y.dtype.type(0)
    for r in prange(rows):
        for c in range(channels):
            v = y[r, c]
            if has_bias:
                v += bias[c]
            v += shortcut[r, c]
            if relu and not (v > zero or v != v):
                v = zero
            y[r, c] = v


def bias_residual_activation(y: np.ndarray, bias: np.ndarray | None, shortcut: np.ndarray, kind: int) -> None:
    """In place on ``y`` (rows x C, unit stride along C): ``f(y + bias + shortcut)`` (``shortcut``
    rows x C), one pass when both are contiguous."""
    if y.flags.c_contiguous and shortcut.flags.c_contiguous:
        vector = _EMPTY[y.dtype.char] if bias is None else bias
        _bias_residual_relu(y, vector, bias is not None, shortcut, kind == RELU)
        _activation_after(y, kind)
        return
    bias_activation(y, bias, NONE)
    np.add(y, shortcut, out=y)
    bias_activation(y, None, kind)
