"""Batch normalisation, dropout and local response normalisation on channels-last arrays.

Batchnorm and LRN take the input as rows x C (every axis but the channel folded into rows).
Batchnorm's statistics are sums over rows; they run as row chunks in parallel, as many as the shape alone sets
(blocks of 16 rows summed in the data's precision, their sums in float64, combined in chunk order), so
results do not depend on the thread count. The forward's mean and variance take one pass (sums around
each chunk's first value: _batchnorm_forward).
Dropout takes flat arrays and the uniform draws that decide its mask.

Training fuses a relu that follows a batchnorm into it (``relu=True``: runtime/plan.py): the
forward writes relu(y) and never y, and the backward masks dy by [y > 0], recomputing y from
x with the forward's own arithmetic (the same operations in the same order, so the same bits)
instead of reading a saved output: in a network these element-wise passes cost memory traffic,
not arithmetic, and each saved pass over the tensor is what the fusion wins.

Training also fuses a residual add after a batchnorm into it (``skip``: a ResNet block's second
batchnorm, then the add and its relu): the forward writes relu(batchnorm(x) + skip), and never
batchnorm(x) or the sum; the backward masks dy by the saved output (the sum is not recomputable
from x alone) into the skip's gradient ``dz``, and takes the batchnorm's gradient from dz.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

# Row chunks for the parallel channel sums: enough to balance a few dozen threads, few enough
# that combining them costs nothing. Not the thread count: sums are the same on every machine.
_CHUNKS = 64
# Fewer chunks where each would hold fewer values than this: a chunk's fixed work (zeroing and
# merging its 2 x C sums) then outweighed its rows (1024 channels at 7x7, batch 8: 6 rows a chunk).
_CHUNK_VALUES = 16384
# The least row length of the channel sums' loops (_wide_rows).
_WIDE_LANES = 32
# Rows summed in the data's precision before their sum goes into the float64 one: converting every value
# to float64 halved the vector width (one thread, CPU time, resnet20's 64 x 32 x 32 x 16 batchnorm: backward
# 0.87 -> 0.69 ms; 8 and 4 rows measured about the same or slower).
_BLOCK_ROWS = 16


def batchnorm_forward(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray, running_var: np.ndarray,
    eps: float, momentum: float, train: bool, out: np.ndarray, mean: np.ndarray, invstd: np.ndarray,
    relu: bool = False, skip: np.ndarray | None = None,
) -> None:
    """:func:`_batchnorm_forward`; with ``relu``, out = max(batchnorm(x), 0) in the same pass; with ``skip`` (the
    shape of x), out = batchnorm(x) + skip, then the relu."""
    # without a skip, out stands in for it (the same array type: no second compiled variant), never read
    _batchnorm_forward(x, *_wide_rows(x), gamma, beta, running_mean, running_var, eps, momentum, train, out, mean,
                       invstd, relu, out if skip is None else skip, skip is not None)


def batchnorm_backward(
    x: np.ndarray, dy: np.ndarray, gamma: np.ndarray, mean: np.ndarray, invstd: np.ndarray, train: bool,
    dx: np.ndarray, dgamma: np.ndarray, dbeta: np.ndarray, relu: bool = False, beta: np.ndarray | None = None,
    y: np.ndarray | None = None, dz: np.ndarray | None = None,
) -> None:
    """:func:`_batchnorm_backward`; with ``relu`` (and the forward's ``beta``), dy is the gradient
    of max(batchnorm(x), 0) and is masked where batchnorm(x) <= 0 first. With ``y`` and ``dz``
    instead (a forward with a skip and a relu, ``y`` its output): dz = dy masked where y <= 0, the
    skip's gradient, written in the same pass, and dx is batchnorm's gradient from dz."""
    if relu and beta is None:
        raise ValueError("batchnorm_backward with relu needs beta (to recompute the forward output)")
    if (y is None) != (dz is None) or (y is not None and relu):
        raise ValueError("batchnorm_backward takes y and dz together, and not with relu")
    masked = y is not None
    # unmasked, dx stands in for y and dz (the same array type), never read or written
    _batchnorm_backward(x, dy, *_wide_rows(x, dy, *((y, dz) if masked else (dx, dx))), gamma, mean, invstd, train,
                        dx, dgamma, dbeta, relu, gamma if beta is None else beta, dz if masked else dy, masked)


def _wide_rows(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays (rows x C, one shape) as rows/k x kC, k rows side by side, so that the channel sums' inner
    loop is at least _WIDE_LANES long: over 16 channels the forward's sums took 1.6x the time per byte of 32
    channels (one thread, CPU time: 0.58 ms for 64 x 32 x 32 x 16, 0.17 ms for half the bytes at 32; likely
    LLVM's vector loop, 8 lanes unrolled 4 times, left 16-long loops scalar). k = 1 where rows is not a multiple
    of k or an array is not contiguous (a reshape would copy)."""
    rows, channels = arrays[0].shape
    k = max(1, _WIDE_LANES // channels)
    if k == 1 or rows % k or not all(a.flags.c_contiguous for a in arrays):
        return list(arrays)
    return [a.reshape(rows // k, k * channels) for a in arrays]


@njit(inline="always")
def _chunks(rows, lanes):  # pragma: no cover - jitted
    """The row chunks of the channel sums over a rows x lanes array (a function of the shape only)."""
    return max(1, min(rows, _CHUNKS, rows * lanes // _CHUNK_VALUES))


@njit(parallel=True, cache=True, error_model="numpy")
def _batchnorm_forward(
    x, xw, gamma, beta, running_mean, running_var, eps, momentum, train, out, mean, invstd, relu, skip, residual
):  # pragma: no cover - jitted
    """out = (x - mean) * invstd * gamma + beta per channel, for x of shape rows x C (plus skip, of
    that shape, with ``residual``; then max(., 0) with ``relu``; NaN stays NaN, as relu_forward).
    ``xw``: x's values as k rows side by side (_wide_rows), whose column j is channel j % C; the
    statistics are summed over it.

    train: mean and the biased variance come from the batch (rows > 1), and the running
    statistics move towards them: running = (1 - momentum) * running + momentum * batch, with
    the unbiased variance for running_var. Otherwise the running statistics are used. Either
    way ``mean`` and ``invstd`` = 1/sqrt(var + eps) are written for the backward pass.
    """
    rows, channels = x.shape
    if train:
        # Per chunk and column of xw, in one pass: the sums of d = x - s and of d^2, s the chunk's first value in
        # that column (so no cancellation when |mean| >> std: s is within a few std of the mean), which give the
        # chunk's mean and its squares around it, M2 = sum d^2 - (sum d)^2 / n. The chunks and a channel's k columns
        # are then merged exactly (Chan et al.). Two passes (the mean, then the squares around it) took 1.1-1.2x
        # the forward's time (resnet20's shapes, 2 threads).
        wide, lanes = xw.shape
        chunks = _chunks(wide, lanes)
        stats = np.empty((chunks, 2 * lanes))  # zeroed per chunk (np.zeros: another loop)
        # blocks of _BLOCK_ROWS rows summed in the data's precision, then into float64; the shifts beside them
        block = np.empty((chunks, 3 * lanes), x.dtype)
        for t in prange(chunks):
            for c in range(2 * lanes):
                stats[t, c] = 0.0
            lo, hi = t * wide // chunks, (t + 1) * wide // chunks
            for c in range(lanes):
                block[t, 2 * lanes + c] = xw[lo, c]
            for r0 in range(lo, hi, _BLOCK_ROWS):
                for c in range(2 * lanes):
                    block[t, c] = 0
                for r in range(r0, min(r0 + _BLOCK_ROWS, hi)):
                    for c in range(lanes):
                        d = xw[r, c] - block[t, 2 * lanes + c]
                        block[t, c] += d
                        block[t, lanes + c] += d * d
                for c in range(2 * lanes):
                    stats[t, c] += block[t, c]
            for c in range(lanes):
                shifted_mean = stats[t, c] / (hi - lo)
                m2 = stats[t, lanes + c] - stats[t, c] * shifted_mean
                stats[t, lanes + c] = m2 if not m2 < 0.0 else 0.0  # >= 0 however it rounds; NaN stays NaN
                stats[t, c] = block[t, 2 * lanes + c] + shifted_mean
        unbiased = rows / (rows - 1.0)
        # Merged over the chunks row by row of stats (t outer, then a channel's columns in order: each
        # channel's sums take the same terms in the same order as a loop over t per channel, which walked
        # stats down its columns and divided for every term: 0.4 of 0.46 ms for 512 x 14 x 14).
        totals = np.zeros(channels)
        for t in range(chunks):
            count = (t + 1) * wide // chunks - t * wide // chunks
            for j0 in range(0, lanes, channels):
                for c in range(channels):
                    totals[c] += stats[t, j0 + c] * count
        for c in range(channels):
            totals[c] /= rows  # the batch mean
        squares = np.zeros(channels)
        for t in range(chunks):
            count = (t + 1) * wide // chunks - t * wide // chunks
            for j0 in range(0, lanes, channels):
                for c in range(channels):
                    d = stats[t, j0 + c] - totals[c]
                    squares[c] += stats[t, lanes + j0 + c] + d * d * count
        for c in range(channels):
            batch_mean = totals[c]
            batch_var = squares[c] / rows
            mean[c] = batch_mean
            invstd[c] = 1.0 / math.sqrt(batch_var + eps)
            running_mean[c] = (1.0 - momentum) * running_mean[c] + momentum * batch_mean
            running_var[c] = (1.0 - momentum) * running_var[c] + momentum * batch_var * unbiased
    else:
        for c in range(channels):
            mean[c] = running_mean[c]
            invstd[c] = 1.0 / math.sqrt(running_var[c] + eps)
    # scale as the unfused kernel computed it inline (gamma[c] * invstd[c], in the data's
    # precision); _batchnorm_backward recomputes y with exactly this expression.
    scale = np.empty(channels, x.dtype)
    for c in range(channels):
        scale[c] = gamma[c] * invstd[c]
    zero = x.dtype.type(0)
    for r in prange(rows):
        for c in range(channels):
            v = (x[r, c] - mean[c]) * scale[c] + beta[c]
            if residual:
                v = v + skip[r, c]  # rounded as the unfused add rounds it
            if relu and not (v > zero or v != v):
                v = zero
            out[r, c] = v


@njit(parallel=True, cache=True, error_model="numpy")
def _batchnorm_backward(
    x, dy, xw, dyw, yw, dzw, gamma, mean, invstd, train, dx, dgamma, dbeta, relu, beta, grad, masked
):  # pragma: no cover - jitted
    """dbeta = sum dy, dgamma = sum dy * xhat (xhat = (x - mean) * invstd) per channel, and

    train: dx = gamma * invstd * (dy - dbeta/rows - xhat * dgamma/rows)  (through the batch
           mean and variance);
    eval:  dx = gamma * invstd * dy  (the statistics are constants).
    ``mean`` and ``invstd`` are the ones the forward pass wrote. With ``relu``, dy is first
    masked by [y > 0], y = (x - mean) * (gamma * invstd) + beta recomputed as the forward did. With
    ``masked``, dy is masked by [y > 0] for the saved y (``yw``) into dz (``dzw``) in the sums' pass,
    and dx is computed from dz (as relu's backward and then the batchnorm's would). ``grad``: what
    the dx pass reads, dz with ``masked``, else dy. (Where ``masked`` chooses, it chooses between
    whole loops: inside them, a branch on it kept the plain loops from vectorising, 1.2x slower.)
    ``xw``, ``dyw``, ``yw``, ``dzw``: x, dy, y and dz as k rows side by side (_wide_rows, the same k),
    over which the sums run.
    """
    rows, channels = x.shape
    wide, lanes = xw.shape
    zero = x.dtype.type(0)
    # dx = scale * (dy - shift - xhat * slope); shift and slope are 0 in eval mode.
    scale = np.empty(channels, x.dtype)
    for c in range(channels):
        scale[c] = gamma[c] * invstd[c]
    # per column of xw: its channel's mean, scale, beta and invstd
    mean_w = np.empty(lanes, x.dtype)
    scale_w = np.empty(lanes, x.dtype)
    beta_w = np.empty(lanes, x.dtype)
    invstd_w = np.empty(lanes, x.dtype)
    for j in range(lanes):
        mean_w[j] = mean[j % channels]
        scale_w[j] = scale[j % channels]
        beta_w[j] = beta[j % channels]
        invstd_w[j] = invstd[j % channels]
    chunks = _chunks(wide, lanes)
    # np.empty, zeroed per chunk: np.zeros would become a parallel loop of its own.
    partial = np.empty((chunks, 2 * lanes))
    # each chunk's rows in blocks of _BLOCK_ROWS, summed in the data's precision, then into float64
    block = np.empty((chunks, 2 * lanes), x.dtype)
    for t in prange(chunks):
        for c in range(2 * lanes):
            partial[t, c] = 0.0
        hi = (t + 1) * wide // chunks
        for r0 in range(t * wide // chunks, hi, _BLOCK_ROWS):
            for c in range(2 * lanes):
                block[t, c] = zero
            if masked:
                for r in range(r0, min(r0 + _BLOCK_ROWS, hi)):
                    for c in range(lanes):
                        g = dyw[r, c] if yw[r, c] > zero else zero
                        dzw[r, c] = g
                        block[t, c] += g
                        block[t, lanes + c] += g * ((xw[r, c] - mean_w[c]) * invstd_w[c])
                for c in range(2 * lanes):
                    partial[t, c] += block[t, c]
                continue
            for r in range(r0, min(r0 + _BLOCK_ROWS, hi)):
                for c in range(lanes):
                    g = dyw[r, c]
                    if relu and not ((xw[r, c] - mean_w[c]) * scale_w[c] + beta_w[c] > zero):
                        g = zero
                    block[t, c] += g
                    block[t, lanes + c] += g * ((xw[r, c] - mean_w[c]) * invstd_w[c])
            for c in range(2 * lanes):
                partial[t, c] += block[t, c]
    # merged row by row of partial, as the forward's statistics
    sum_dy = np.zeros(channels)
    sum_dyx = np.zeros(channels)
    for t in range(chunks):
        for j0 in range(0, lanes, channels):
            for c in range(channels):
                sum_dy[c] += partial[t, j0 + c]
                sum_dyx[c] += partial[t, lanes + j0 + c]
    for c in range(channels):
        dbeta[c] = sum_dy[c]
        dgamma[c] = sum_dyx[c]
    shift = np.empty(channels, x.dtype)
    slope = np.empty(channels, x.dtype)
    for c in range(channels):
        shift[c] = dbeta[c] / rows if train else 0.0
        slope[c] = dgamma[c] / rows if train else 0.0
    for r in prange(rows):
        for c in range(channels):
            g = grad[r, c]
            if relu and not ((x[r, c] - mean[c]) * scale[c] + beta[c] > zero):
                g = zero
            xhat = (x[r, c] - mean[c]) * invstd[c]
            dx[r, c] = scale[c] * (g - shift[c] - xhat * slope[c])


@njit(parallel=True, cache=True, error_model="numpy")
def dropout_apply(x, uniform, p, scale, out):  # pragma: no cover - jitted
    """out = x * scale where uniform >= p, else x * 0 (flat arrays); forward and backward alike.

    Multiplying by zero (rather than writing zero) lets NaN and Inf through, as PyTorch does.
    """
    keep = x.dtype.type(scale)
    zero = x.dtype.type(0)
    for i in prange(x.size):
        out[i] = x[i] * (keep if uniform[i] >= p else zero)


@njit(parallel=True, cache=True, error_model="numpy")
def lrn_forward(x, out, denom, size, alpha, beta, k):  # pragma: no cover - jitted
    """out[r, c] = x[r, c] / denom[r, c]**beta with denom = k + alpha/size * sum x[r, c']^2
    over c' from c - size//2 to c + (size-1)//2 (clipped); ``denom`` is kept for backward."""
    rows, channels = x.shape
    before, after = size // 2, (size - 1) // 2
    coef = alpha / size
    power = x.dtype.type(-beta)  # pow in the data's precision: powf is 2x faster than pow
    for r in prange(rows):
        for c in range(channels):
            total = 0.0
            for j in range(max(c - before, 0), min(c + after + 1, channels)):
                total += x[r, j] * x[r, j]
            d = x.dtype.type(k + coef * total)
            denom[r, c] = d
            out[r, c] = x[r, c] * d**power


@njit(parallel=True, cache=True, error_model="numpy")
def lrn_backward(x, dy, denom, dx, size, alpha, beta):  # pragma: no cover - jitted
    """dx[i] = dy[i] d_i^-beta - 2 alpha beta / size * x[i] * sum_j dy[j] x[j] d_j^(-beta-1),
    j over the channels whose window holds i: from i - (size-1)//2 to i + size//2."""
    rows, channels = x.shape
    before, after = size // 2, (size - 1) // 2
    coef = 2.0 * alpha * beta / size
    power = x.dtype.type(-beta)
    chunks = min(rows, _CHUNKS)
    for t in prange(chunks):
        lo, hi = t * rows // chunks, (t + 1) * rows // chunks
        # weight[j] = dy_j x_j d_j^(-beta-1), one row at a time.
        weight = np.empty(channels)
        for r in range(lo, hi):
            for c in range(channels):
                d = denom[r, c]
                scale = d**power
                weight[c] = dy[r, c] * x[r, c] * scale / d
                dx[r, c] = dy[r, c] * scale
            for c in range(channels):
                total = 0.0
                for j in range(max(c - after, 0), min(c + before + 1, channels)):
                    total += weight[j]
                dx[r, c] -= coef * x[r, c] * total
