"""The GPU softmax cross-entropy (CrossEntropy on the cuda backend: runtime/kernels/cuda/loss.py)
against the NumPy one (cnnlang/train/losses.py) and the metrics' top-k rule: loss, gradient,
argmax hits, top-k hits and predictions, with and without label smoothing."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cuda.loss import THREADS
from cnnlang.train.losses import CrossEntropy, softmax_cross_entropy
from cnnlang.train.metrics import topk_correct

TOLERANCE = {np.float64: dict(rtol=1e-12, atol=1e-15), np.float32: dict(rtol=2e-6, atol=1e-7)}


@pytest.fixture
def on_device(cuda_backend):
    def compute(logits: np.ndarray, labels: np.ndarray, smoothing: float, k: int = 1, want_grad: bool = True):
        """(loss sum, argmax hits, top-k hits, grad or None, predictions) from the kernels."""
        loss = CrossEntropy(cuda_backend, smoothing)
        result = loss(cuda_backend.to_device(logits), labels, k=k, gradient=want_grad)
        grad = None if result.grad is None else cuda_backend.to_host(result.grad)
        return result.loss_sum, result.correct, result.top_k, grad, loss.predictions()

    return compute


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_gradient_and_hits_match_numpy(on_device, dtype, smoothing):
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


def test_more_classes_than_threads_and_ties(on_device):
    # 130 classes: each thread of the 128 handles two columns; ties test the first-maximum rule
    # (argmax) and the tie-against-the-label rule (top-k).
    rng = np.random.default_rng(4)
    logits = rng.integers(-2, 3, (2, THREADS + 2)).astype(np.float64)
    labels = np.array([int(logits[0].argmax()), THREADS + 1])
    expected_loss, expected_grad = softmax_cross_entropy(logits, labels, 0.2)
    loss_sum, correct, top_k, grad, predictions = on_device(logits, labels, 0.2, k=5)
    assert loss_sum / 2 == pytest.approx(expected_loss, rel=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))
    assert correct == int((logits.argmax(axis=1) == labels).sum())
    assert top_k == topk_correct(logits, labels, 5)


def test_without_gradient_and_with_extreme_logits(on_device):
    # exp(1000) overflows unless the row maximum is subtracted first.
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    loss_sum, correct, top_k, grad, _ = on_device(logits, labels, 0.0, want_grad=False)
    assert grad is None
    assert loss_sum / 2 == pytest.approx(softmax_cross_entropy(logits, labels)[0], rel=1e-12)
    assert (correct, top_k) == (1, 1)  # the all-equal row: argmax is class 0, and ties count against label 2


def test_a_nan_logit_gives_a_nan_loss_and_no_hit(on_device):
    logits = np.array([[0.0, np.nan, 1.0], [2.0, 0.0, 1.0]])
    labels = np.array([1, 0])
    loss_sum, correct, top_k, _, predictions = on_device(logits, labels, 0.0, k=2)
    assert np.isnan(loss_sum)
    np.testing.assert_array_equal(predictions, logits.argmax(axis=1))  # NumPy takes the first NaN
    assert (correct, top_k) == (2, topk_correct(logits, labels, 2))


def test_a_data_parallel_share_scales_the_gradient_as_on_the_cpu(cuda_backend):
    logits = np.random.default_rng(5).standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    expected = CrossEntropy("cpu")(logits, labels, grad_factor=0.375).grad
    got = CrossEntropy(cuda_backend)(cuda_backend.to_device(logits), labels, grad_factor=0.375).grad
    np.testing.assert_allclose(cuda_backend.to_host(got), expected, rtol=1e-12, atol=1e-15)


def test_bad_labels_are_refused_before_any_kernel_runs(cuda_backend):
    with pytest.raises(ValueError, match="label 4 .* out of range for 4 classes"):
        CrossEntropy(cuda_backend)(cuda_backend.zeros((2, 4), np.float32), np.array([0, 4]))
