"""The GPU softmax cross-entropy against the NumPy one (cnnlang/train/losses.py) and the metrics'
top-k rule: loss, gradient, argmax hits and top-k hits, with and without label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.train.losses import softmax_cross_entropy
from cnnlang.train.metrics import topk_correct

cuda = pytest.importorskip("numba.cuda")
from cnnlang.runtime.kernels.cuda import loss as kernels  # noqa: E402 - after the skip

TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-15), np.float32: dict(rtol=2e-6, atol=1e-7)}


def on_device(logits: np.ndarray, labels: np.ndarray, smoothing: float, k: int = 1, want_grad: bool = True):
    """(loss sum, argmax hits, top-k hits, grad or None, predictions) from the kernels."""
    n, c = logits.shape
    grad = cuda.device_array((n, c), logits.dtype) if want_grad else None
    rows = cuda.device_array(n, np.float64), cuda.device_array(n, np.int32), cuda.device_array(n, np.int32)
    totals = cuda.device_array(3, np.float64)
    kernels.cross_entropy(cuda.to_device(logits), cuda.to_device(labels.astype(np.int32)), smoothing, 1.0 / n,
                          grad, *rows, k, totals)
    loss_sum, correct, top_k = totals.copy_to_host()
    return loss_sum, correct, top_k, None if grad is None else grad.copy_to_host(), rows[1].copy_to_host()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_gradient_and_hits_match_numpy(dtype, smoothing):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((5, 7)) * 3).astype(dtype)
    labels = rng.integers(0, 7, 5)
    expected_loss, expected_grad = softmax_cross_entropy(logits, labels, smoothing)
    loss_sum, correct, top_k, grad, predictions = on_device(logits, labels, smoothing, k=3)
    assert loss_sum / 5 == pytest.approx(expected_loss, rel=TOLERANCE[dtype]["rtol"])
    np.testing.assert_allclose(grad, expected_grad, **TOLERANCE[dtype])
    assert grad.dtype == dtype
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))
    assert correct == int((logits.argmax(axis=1) == labels).sum())
    assert top_k == topk_correct(logits, labels, 3)


def test_more_classes_than_threads_and_ties():
    # 130 classes: each thread of the 128 handles two columns; ties test the first-maximum rule
    # (argmax) and the tie-against-the-label rule (top-k).
    rng = np.random.default_rng(4)
    logits = rng.integers(-2, 3, (2, kernels.THREADS + 2)).astype(np.float64)
    labels = np.array([int(logits[0].argmax()), kernels.THREADS + 1])
    expected_loss, expected_grad = softmax_cross_entropy(logits, labels, 0.2)
    loss_sum, correct, top_k, grad, predictions = on_device(logits, labels, 0.2, k=5)
    assert loss_sum / 2 == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))
    assert correct == int((logits.argmax(axis=1) == labels).sum())
    assert top_k == topk_correct(logits, labels, 5)


def test_without_gradient_and_with_extreme_logits():
    # exp(1000) overflows unless the row maximum is subtracted first.
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    loss_sum, correct, top_k, grad, _ = on_device(logits, labels, 0.0, want_grad=False)
    assert grad is None
    assert loss_sum / 2 == pytest.approx(softmax_cross_entropy(logits, labels)[0], rel=1e-12)
    assert (correct, top_k) == (1, 1)  # the all-equal row: argmax is class 0, and ties count against label 2


def test_a_nan_logit_gives_a_nan_loss_and_no_hit():
    logits = np.array([[0.0, np.nan, 1.0], [2.0, 0.0, 1.0]])
    labels = np.array([1, 0])
    loss_sum, correct, top_k, _, predictions = on_device(logits, labels, 0.0, k=2)
    assert np.isnan(loss_sum)
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))  # NumPy takes the first NaN
    assert (correct, top_k) == (2, topk_correct(logits, labels, 2))
