"""Classification loss: softmax cross-entropy with optional label smoothing, and its gradient.

The forward and the backward sit together so the derivative can be checked by eye:
with p = softmax(z) and target t (one-hot, or smoothed as in PyTorch:
t = (1 - s) * onehot + s / C), the loss of a row is -sum(t * log p) and its gradient is p - t.
The batch loss is the mean over rows, so the gradient is divided by N.

:class:`CrossEntropy` is what training and evaluation call: the same loss computed where the
logits live (NumPy here, runtime/kernels/cuda/loss.py on a GPU), giving back only the batch's
loss sum and hit counts, and the gradient on the logits' backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnlang.runtime.backend import Backend, get_backend
from cnnlang.runtime.kernels.cpu.loss import softmax_cross_entropy_into

from .metrics import topk_correct


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
    if logits.dtype in (np.float32, np.float64):
        # one compiled pass (runtime/kernels/cpu/loss.py): the NumPy calls below took 0.061 ms on
        # 64 x 10 logits (one thread), serial time in every training step; it takes 0.026
        grad = np.empty(logits.shape, logits.dtype)
        loss = softmax_cross_entropy_into(logits, labels.astype(np.int64, copy=False), float(smoothing), grad)
        return float(loss), grad
    log_p = log_softmax(logits)
    loss = _mean_loss(log_p, labels, smoothing)
    rows = np.arange(n)

    grad = np.exp(log_p)  # softmax, already computed stably
    if smoothing:
        grad -= smoothing / c
        grad[rows, labels] -= 1.0 - smoothing
    else:
        grad[rows, labels] -= 1.0
    grad /= n
    return loss, grad.astype(logits.dtype, copy=False)


def _mean_loss(log_p: np.ndarray, labels: np.ndarray, smoothing: float) -> float:
    """The batch's mean loss from its log-probabilities (N x C)."""
    picked = log_p[np.arange(len(labels)), labels]
    if smoothing:
        per_row = -(1.0 - smoothing) * picked - (smoothing / log_p.shape[1]) * log_p.sum(axis=1)
    else:
        per_row = -picked
    return float(per_row.mean())


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


@dataclass
class BatchLoss:
    """What one batch's loss brings back to the host: sums and counts, never per-example arrays."""

    loss_sum: float  # the sum over the batch of each example's loss
    correct: int  # examples whose first-maximum logit is the label (argmax)
    top_k: int  # examples whose label is among the top k (ties count against the label)
    grad: Any  # dL/dlogits on the logits' backend (None when not asked for)


class CrossEntropy:
    """Softmax cross-entropy computed where the logits live: on the CPU by
    :func:`softmax_cross_entropy`, on a GPU by runtime/kernels/cuda/loss.py, which returns only
    :class:`BatchLoss`'s numbers (the gradient stays on the device). The gradient is that of the
    batch's mean loss, times ``grad_factor`` (data-parallel ranks give their share of the global
    batch)."""

    def __init__(self, backend: str | Backend | None = None, smoothing: float = 0.0) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.backend = get_backend(backend)
        self.smoothing = float(smoothing)
        self._workspace: dict[str, Any] = {}
        self._predictions: np.ndarray | None = None

    def __call__(self, logits: Any, labels: np.ndarray, *, k: int = 1, gradient: bool = True,
                 grad_factor: float = 1.0) -> BatchLoss:
        labels = _check_labels(logits, labels)  # on the host: a kernel never reads a bad label
        if self.backend.shares_host_memory:
            return self._on_host(np.asarray(logits), labels, k, gradient, grad_factor)
        return self._on_device(logits, labels, k, gradient, grad_factor / len(labels))

    def predictions(self) -> np.ndarray:
        """The last batch's predicted classes (the first maximum of each row), on the host."""
        if self._predictions is None:
            self._predictions = self.backend.to_host(self._workspace["row_pred"]).astype(np.int64)
        return self._predictions

    def _on_host(self, logits: np.ndarray, labels: np.ndarray, k: int, gradient: bool, factor: float) -> BatchLoss:
        n = len(logits)
        if gradient:
            loss, grad = softmax_cross_entropy(logits, labels, self.smoothing)
            if factor != 1.0:
                grad *= factor
        else:
            loss = _mean_loss(log_softmax(logits), labels, self.smoothing)
        self._predictions = logits.argmax(axis=1)
        return BatchLoss(loss * n, int((self._predictions == labels).sum()), topk_correct(logits, labels, k),
                         grad if gradient else None)

    def _on_device(self, logits: Any, labels: np.ndarray, k: int, gradient: bool, scale: float) -> BatchLoss:
        from cnnlang.runtime.kernels.cuda.loss import LOSS_SUM, CORRECT, TOP_K, cross_entropy

        backend, space = self.backend, self._workspace
        n = logits.shape[0]
        if space.get("shape") != logits.shape or space["grad"].dtype != logits.dtype:
            space.update(shape=logits.shape, grad=backend.empty(logits.shape, logits.dtype),
                         row_loss=backend.empty((n,), np.float64), row_pred=backend.empty((n,), np.int32),
                         row_rank=backend.empty((n,), np.int32), labels=backend.empty((n,), np.int32),
                         totals=backend.empty((3,), np.float64))
        self._predictions = None
        backend.upload(labels.astype(np.int32), space["labels"])
        grad = space["grad"] if gradient else None
        cross_entropy(logits, space["labels"], self.smoothing, scale, grad, space["row_loss"], space["row_pred"],
                      space["row_rank"], k, space["totals"])
        totals = backend.to_host(space["totals"])
        return BatchLoss(float(totals[LOSS_SUM]), int(totals[CORRECT]), int(totals[TOP_K]), grad)
