"""Classification loss: softmax cross-entropy with optional label smoothing, and its gradient.

The forward and the backward sit together so the derivative can be checked by eye:
with p = softmax(z) and target t (one-hot, or smoothed as in PyTorch:
t = (1 - s) * onehot + s / C), the loss of a row is -sum(t * log p) and its gradient is p - t.
The batch loss is the mean over rows, so the gradient is divided by N.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) along the last axis, stable for any finite logits (the row maximum
    is subtracted before exponentiating, so exp never overflows)."""
    logits = np.asarray(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of ``logits`` (N x C) against integer ``labels`` (N), and dL/dlogits
    (N x C, the dtype of ``logits``). ``smoothing`` in [0, 1) spreads that much of each target's
    mass evenly over all C classes, as PyTorch's ``label_smoothing`` does."""
    logits = np.asarray(logits)
    labels = _check_labels(logits, labels)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
    n, c = logits.shape
    log_p = log_softmax(logits)
    rows = np.arange(n)
    picked = log_p[rows, labels]
    if smoothing:
        per_row = -(1.0 - smoothing) * picked - (smoothing / c) * log_p.sum(axis=1)
    else:
        per_row = -picked
    loss = float(per_row.mean())

    grad = np.exp(log_p)  # softmax, already computed stably
    if smoothing:
        grad -= smoothing / c
        grad[rows, labels] -= 1.0 - smoothing
    else:
        grad[rows, labels] -= 1.0
    grad /= n
    return loss, grad.astype(logits.dtype, copy=False)


def _check_labels(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"logits must be N x C with N, C >= 1, got shape {logits.shape}")
    if not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    labels = np.asarray(labels)
    n, c = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match logits {logits.shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (class indices), got {labels.dtype}")
    bad = (labels < 0) | (labels >= c)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"label {int(labels[first])} (at index {first}) is out of range for {c} classes; expected 0..{c - 1}")
    return labels
