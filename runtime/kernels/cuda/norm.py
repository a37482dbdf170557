"""Batch normalisation, LRN and dropout on the GPU, with the formulas of
runtime/kernels/cpu/norm.py (arrays rows x C, the channel axis last and contiguous).

Batchnorm's statistics are chunked column reductions (runtime/kernels/cuda/reduce.py): each
block takes one chunk of rows, its mean and then the squares around that mean (two passes, no
cancellation when |mean| >> std); one thread per channel merges the chunks exactly (Chan et al.,
as the CPU does), writes mean and 1/sqrt(var + eps) and moves the running statistics
(momentum convention, unbiased variance). Everything accumulates in float64.

Dropout draws no array of random numbers: value i is kept when the uniform made from
Philox-4x32-10 (Salmon et al., 2011) of counter i under the 64-bit key is >= p. The op takes one
key per forward from ``ctx.rng.next_key()``, and backward regenerates the same mask from it:
seeded, reproducible, and nothing stored.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float64, uint64

from .launch import MAX_THREADS, elementwise
from .reduce import CHUNK_ROWS, chunk_blocks, column_tree


@cuda.jit
def _batch_partials(x, partial, chunk_rows):  # pragma: no cover - device code
    """partial[t, 0, c], partial[t, 1, c] = chunk t's mean and sum of squared deviations."""
    shared = cuda.shared.array(MAX_THREADS, float64)
    rows, channels = x.shape
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    lo = cuda.blockIdx.y * chunk_rows
    hi = min(lo + chunk_rows, rows)
    first, step = lo + cuda.threadIdx.y, cuda.blockDim.y
    total = 0.0
    if c < channels:
        for r in range(first, hi, step):
            total += x[r, c]
    mean = column_tree(shared, total) / (hi - lo)
    squares = 0.0
    if c < channels:
        for r in range(first, hi, step):
            d = x[r, c] - mean
            squares += d * d
    squares = column_tree(shared, squares)
    if cuda.threadIdx.y == 0 and c < channels:
        partial[cuda.blockIdx.y, 0, c] = mean
        partial[cuda.blockIdx.y, 1, c] = squares


@cuda.jit
def _batch_statistics(
    partial, rows, chunk_rows, eps, momentum, running_mean, running_var, mean, invstd
):  # pragma: no cover - device code
    c = cuda.grid(1)
    if c >= mean.size:
        return
    chunks = partial.shape[0]
    total = 0.0
    for t in range(chunks):
        total += partial[t, 0, c] * (min(rows, (t + 1) * chunk_rows) - t * chunk_rows)
    batch_mean = total / rows
    squares = 0.0
    for t in range(chunks):
        d = partial[t, 0, c] - batch_mean
        squares += partial[t, 1, c] + d * d * (min(rows, (t + 1) * chunk_rows) - t * chunk_rows)
    batch_var = squares / rows
    mean[c] = batch_mean
    invstd[c] = 1.0 / math.sqrt(batch_var + eps)
    running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * batch_mean
    running_var[c] = (1.0 - momentum) * running_var[c] + momentum * batch_var * (rows / (rows - 1.0))


@cuda.jit
def _running_statistics(running_mean, running_var, eps, mean, invstd):  # pragma: no cover - device code
    c = cuda.grid(1)
    if c < mean.size:
        mean[c] = running_mean[c]
        invstd[c] = 1.0 / math.sqrt(running_var[c] + eps)


@cuda.jit
def _batchnorm_apply(x, gamma, beta, mean, invstd, out):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        c = i % mean.size
        out[i] = (x[i] - mean[c]) * (gamma[c] * invstd[c]) + beta[c]


def batchnorm_forward(
    x, gamma, beta, running_mean, running_var, eps, momentum, train, out, mean, invstd, partial, chunk_rows=CHUNK_ROWS
) -> None:
    """out = (x - mean) * invstd * gamma + beta per channel, x and out rows x C (C-contiguous).

    train: mean and biased variance of the batch (rows > 1), running statistics moved towards
    them (unbiased variance); else the running statistics. ``mean`` and ``invstd`` are written
    for backward. ``partial``: float64 scratch (chunks(rows, chunk_rows), 2, C)."""
    rows, channels = x.shape
    blocks, threads = elementwise(channels)
    if train:
        grid, block = chunk_blocks(rows, channels, chunk_rows)
        _batch_partials[grid, block](x, partial, chunk_rows)
        _batch_statistics[blocks, threads](
            partial, rows, chunk_rows, eps, momentum, running_mean, running_var, mean, invstd
        )
    else:
        _running_statistics[blocks, threads](running_mean, running_var, eps, mean, invstd)
    blocks, threads = elementwise(x.size)
    _batchnorm_apply[blocks, threads](x.reshape(-1), gamma, beta, mean, invstd, out.reshape(-1))


@cuda.jit
def _gradient_partials(x, dy, mean, invstd, partial, chunk_rows):  # pragma: no cover - device code
    """partial[t, 0, c], partial[t, 1, c] = chunk t's sums of dy and dy * xhat."""
    shared = cuda.shared.array(MAX_THREADS, float64)
    rows, channels = x.shape
    c = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    lo = cuda.blockIdx.y * chunk_rows
    hi = min(lo + chunk_rows, rows)
    sum_dy = 0.0
    sum_dyx = 0.0
    if c < channels:
        for r in range(lo + cuda.threadIdx.y, hi, cuda.blockDim.y):
            g = dy[r, c]
            sum_dy += g
            sum_dyx += g * ((x[r, c] - mean[c]) * invstd[c])
    sum_dy = column_tree(shared, sum_dy)
    sum_dyx = column_tree(shared, sum_dyx)
    if cuda.threadIdx.y == 0 and c < channels:
        partial[cuda.blockIdx.y, 0, c] = sum_dy
        partial[cuda.blockIdx.y, 1, c] = sum_dyx


@cuda.jit
def _parameter_grads(partial, dgamma, dbeta):  # pragma: no cover - device code
    c = cuda.grid(1)
    if c < dgamma.size:
        sum_dy = 0.0
        sum_dyx = 0.0
        for t in range(partial.shape[0]):
            sum_dy += partial[t, 0, c]
            sum_dyx += partial[t, 1, c]
        dbeta[c] = sum_dy
        dgamma[c] = sum_dyx


@cuda.jit
def _batchnorm_input_grad(x, dy, gamma, mean, invstd, dgamma, dbeta, rows, train, dx):  # pragma: no cover
    i = cuda.grid(1)
    if i < x.size:
        c = i % mean.size
        zero = x.dtype.type(0)
        scale = gamma[c] * invstd[c]
        shift = x.dtype.type(dbeta[c] / rows) if train else zero
        slope = x.dtype.type(dgamma[c] / rows) if train else zero
        xhat = (x[i] - mean[c]) * invstd[c]
        dx[i] = scale * (dy[i] - shift - xhat * slope)


def batchnorm_backward(x, dy, gamma, mean, invstd, train, dx, dgamma, dbeta, partial, chunk_rows=CHUNK_ROWS) -> None:
    """dbeta = sum dy, dgamma = sum dy * xhat per channel; dx through the batch statistics
    (train) or the constant running ones (eval), as the CPU kernel. ``partial`` as forward's."""
    rows, channels = x.shape
    grid, block = chunk_blocks(rows, channels, chunk_rows)
    _gradient_partials[grid, block](x, dy, mean, invstd, partial, chunk_rows)
    blocks, threads = elementwise(channels)
    _parameter_grads[blocks, threads](partial, dgamma, dbeta)
    blocks, threads = elementwise(x.size)
    _batchnorm_input_grad[blocks, threads](
        x.reshape(-1), dy.reshape(-1), gamma, mean, invstd, dgamma, dbeta, rows, train, dx.reshape(-1)
    )


@cuda.jit
def _lrn_forward(x, out, denom, size, alpha, beta, k):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= x.size:
        return
    rows, channels = x.shape
    r, c = i // channels, i % channels
    before, after = size // 2, (size - 1) // 2
    total = 0.0
    for j in range(max(c - before, 0), min(c + after + 1, channels)):
        total += x[r, j] * x[r, j]
    d = x.dtype.type(k + alpha / size * total)
    denom[r, c] = d
    out[r, c] = x[r, c] * d ** x.dtype.type(-beta)


@cuda.jit
def _lrn_backward(x, dy, denom, dx, size, alpha, beta):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= x.size:
        return
    rows, channels = x.shape
    r, c = i // channels, i % channels
    before, after = size // 2, (size - 1) // 2
    power = x.dtype.type(-beta)
    total = 0.0
    for j in range(max(c - after, 0), min(c + before + 1, channels)):
        d = denom[r, j]
        total += dy[r, j] * x[r, j] * d**power / d
    dx[r, c] = dy[r, c] * denom[r, c] ** power - 2.0 * alpha * beta / size * x[r, c] * total


def lrn_forward(x, out, denom, size, alpha, beta, k) -> None:
    """out = x / denom**beta, denom = k + alpha/size * (sum of x^2 over the channel window),
    kept for backward (rows x C device arrays)."""
    blocks, threads = elementwise(x.size)
    _lrn_forward[blocks, threads](x, out, denom, size, alpha, beta, k)


def lrn_backward(x, dy, denom, dx, size, alpha, beta) -> None:
    """dx[i] = dy[i] d_i^-beta - 2 alpha beta / size * x[i] * sum_j dy[j] x[j] d_j^(-beta-1)."""
    blocks, threads = elementwise(x.size)
    _lrn_backward[blocks, threads](x, dy, denom, dx, size, alpha, beta)


# Philox-4x32's multipliers and Weyl increments, as uint64 so that no operation leaves the
# unsigned integers (Numba would turn uint64 mixed with int64 into float64).
_MASK = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)


@cuda.jit(device=True, inline=True)
def philox_uniform(index, key_lo, key_hi):  # pragma: no cover - device code
    """A float64 uniform in [0, 1) from Philox-4x32-10 of counter ``index`` under the key; 53
    random bits, made as NumPy makes a double from two 32-bit words."""
    counter = uint64(index)
    c0, c1, c2, c3 = counter & _MASK, counter >> _SHIFT, uint64(0), uint64(0)
    k0, k1 = key_lo, key_hi
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _SHIFT) ^ c1 ^ k0, p1 & _MASK, (p0 >> _SHIFT) ^ c3 ^ k1, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return (float64(c0 >> uint64(5)) * 67108864.0 + float64(c1 >> uint64(6))) / 9007199254740992.0


@cuda.jit
def _dropout_apply(x, key_lo, key_hi, p, scale, out):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < x.size:
        keep = philox_uniform(i, key_lo, key_hi) >= p
        out[i] = x[i] * (x.dtype.type(scale) if keep else x.dtype.type(0))


def dropout_apply(x, key: int, p: float, scale: float, out) -> None:
    """out = x * scale where the uniform of (key, i) is >= p, else x * 0 (NaN and Inf pass, as
    on the CPU); flat device arrays. Forward and backward alike, given the same key."""
    key = int(key) & 0xFFFFFFFFFFFFFFFF
    blocks, threads = elementwise(x.size)
    _dropout_apply[blocks, threads](x, np.uint64(key & 0xFFFFFFFF), np.uint64(key >> 32), p, scale, out)
