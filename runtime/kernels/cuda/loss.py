"""Softmax cross-entropy (with label smoothing) on the GPU: per-row loss, gradient, prediction and
label rank in one kernel, then one block that sums the rows.

The formulas are cnnlang/train/losses.py's: with p = softmax(z) and the smoothed target
t = (1 - s) * onehot + s / C, a row's loss is -sum(t * log p) = -(1 - s) * log p[label]
- (s / C) * sum(log p), and its gradient is (p - t) * scale (scale = 1 / N for the batch mean).

One block per row: its threads stride over the classes and combine in shared memory by a fixed
tree (reduce.tree), so every sum is computed in the same order on every run (no atomics); rows are then summed
by a second, single-block kernel in a fixed order too. Sums are accumulated in float64 whatever
the logits' dtype (the loss is a handful of values per row; precision costs nothing here).

The argmax keeps the first maximum (NumPy's argmax); a label's rank counts the *other* classes
whose logit is at least the label's (metrics.topk_correct's rule: ties count against the label).
"""

from __future__ import annotations

import math

from numba import cuda, float64, int32

from .reduce import tree

#: Threads per block (a power of two); a launch uses fewer for few classes.
THREADS = 128
#: What :func:`sum_rows` writes: loss sum, argmax hits, top-k hits.
LOSS_SUM, CORRECT, TOP_K = 0, 1, 2


def threads_for(classes: int) -> int:
    """The power of two >= ``classes`` (at most THREADS): idle threads only slow the simulator."""
    threads = 1
    while threads < min(classes, THREADS):
        threads *= 2
    return threads


@cuda.jit(device=True)
def _beats(value, at, best, best_at):  # pragma: no cover - device code
    """Whether (value, at) replaces (best, best_at) as NumPy's argmax would: the larger value,
    the first position on a tie, and the first NaN over any number."""
    if value != value:
        return best == best or at < best_at
    return value > best or (value == best and at < best_at)


@cuda.jit
def softmax_cross_entropy_rows(logits, labels, smoothing, scale, write_grad, grad, row_loss, row_pred, row_rank):  # pragma: no cover - device code
    """Block ``r`` handles row r: row_loss[r], row_pred[r] (argmax), row_rank[r] (other classes
    at or above the label) and, when ``write_grad``, grad[r, :] = (p - t) * scale."""
    row = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    classes = logits.shape[1]
    best = cuda.shared.array(THREADS, float64)
    best_at = cuda.shared.array(THREADS, int32)
    exp_sum = cuda.shared.array(THREADS, float64)
    logit_sum = cuda.shared.array(THREADS, float64)
    above = cuda.shared.array(THREADS, int32)

    # 1. the row's maximum and its first position
    top, top_at = -math.inf, classes
    for j in range(tid, classes, width):
        v = float64(logits[row, j])
        if _beats(v, j, top, top_at):
            top, top_at = v, j
    best[tid], best_at[tid] = top, top_at
    cuda.syncthreads()
    half = width // 2
    while half > 0:
        if tid < half:
            if _beats(best[tid + half], best_at[tid + half], best[tid], best_at[tid]):
                best[tid], best_at[tid] = best[tid + half], best_at[tid + half]
        cuda.syncthreads()
        half //= 2
    top = best[0]

    # 2. sum of exp(z - max), sum of z, and the label's rank
    label = labels[row]
    z_label = float64(logits[row, label])
    partial_exp, partial_logits, partial_above = 0.0, 0.0, 0
    for j in range(tid, classes, width):
        v = float64(logits[row, j])
        partial_exp += math.exp(v - top)
        partial_logits += v
        if j != label and v >= z_label:
            partial_above += 1
    exp_sum[tid], logit_sum[tid], above[tid] = partial_exp, partial_logits, partial_above
    cuda.syncthreads()
    tree(exp_sum, tid, width, False)
    tree(logit_sum, tid, width, False)
    tree(above, tid, width, False)

    log_norm = top + math.log(exp_sum[0])  # log sum exp(z)
    if tid == 0:
        picked = z_label - log_norm
        loss = -(1.0 - smoothing) * picked
        if smoothing != 0.0:
            loss -= smoothing / classes * (logit_sum[0] - classes * log_norm)
        row_loss[row] = loss
        row_pred[row] = best_at[0]
        row_rank[row] = above[0] if z_label == z_label else classes  # a NaN label logit is never a hit
    if write_grad:
        spread = smoothing / classes
        for j in range(tid, classes, width):
            g = math.exp(float64(logits[row, j]) - log_norm) - spread
            if j == label:
                g -= 1.0 - smoothing
            grad[row, j] = g * scale


@cuda.jit
def sum_rows(row_loss, row_pred, row_rank, labels, k, totals):  # pragma: no cover - device code
    """One block: totals[LOSS_SUM] = sum(row_loss), totals[CORRECT] = #(row_pred == labels),
    totals[TOP_K] = #(row_rank < k), each summed in a fixed order."""
    tid = cuda.threadIdx.x
    width = cuda.blockDim.x
    loss = cuda.shared.array(THREADS, float64)
    hits = cuda.shared.array(THREADS, int32)
    top_hits = cuda.shared.array(THREADS, int32)
    partial_loss, partial_hits, partial_top = 0.0, 0, 0
    for i in range(tid, row_loss.shape[0], width):
        partial_loss += row_loss[i]
        if row_pred[i] == labels[i]:
            partial_hits += 1
        if row_rank[i] < k:
            partial_top += 1
    loss[tid], hits[tid], top_hits[tid] = partial_loss, partial_hits, partial_top
    cuda.syncthreads()
    tree(loss, tid, width, False)
    tree(hits, tid, width, False)
    tree(top_hits, tid, width, False)
    if tid == 0:
        totals[LOSS_SUM] = loss[0]
        totals[CORRECT] = hits[0]
        totals[TOP_K] = top_hits[0]


def cross_entropy(logits, labels, smoothing: float, scale: float, grad, row_loss, row_pred, row_rank, k: int,
                  totals) -> None:
    """Launch both kernels for the N x C device ``logits`` and the N int32 device ``labels``:
    ``totals`` (3 float64 on the device) gets the loss sum, the argmax hits and the top-``k``
    hits; ``grad`` (N x C, or None for no gradient) gets (p - t) * scale. The row_* arrays
    (N each: float64, int32, int32) are the kernels' workspace; row_pred holds the argmax after."""
    n, classes = logits.shape
    softmax_cross_entropy_rows[n, threads_for(classes)](
        logits, labels, float(smoothing), float(scale), grad is not None, logits if grad is None else grad,
        row_loss, row_pred, row_rank,
    )
    sum_rows[1, threads_for(n)](row_loss, row_pred, row_rank, labels, int(k), totals)
