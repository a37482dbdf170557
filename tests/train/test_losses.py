"""Softmax cross-entropy: value and gradient against a plain float64 NumPy reference and finite
differences, extreme logits, label smoothing, and bad labels."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import central_difference

from cnnlang.train.losses import log_softmax, softmax_cross_entropy


def reference(logits: np.ndarray, labels: np.ndarray, smoothing: float = 0.0) -> tuple[float, np.ndarray]:
    """The textbook formulas, no stabilisation (fine for moderate logits)."""
    n, c = logits.shape
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = (1.0 - smoothing) * np.eye(c)[labels] + smoothing / c
    return float(-(target * np.log(p)).sum(axis=1).mean()), (p - target) / n


def batch(n: int = 4, c: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * 3.0, rng.integers(0, c, n)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_value_and_gradient_match_the_textbook_formulas(smoothing):
    logits, labels = batch()
    loss, grad = softmax_cross_entropy(logits, labels, smoothing)
    expected_loss, expected_grad = reference(logits, labels, smoothing)
    assert loss == pytest.approx(expected_loss, rel=1e-13)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_gradient_matches_finite_differences(smoothing):
    logits, labels = batch(3, 4, seed=1)
    _, grad = softmax_cross_entropy(logits, labels, smoothing)
    numeric = central_difference(lambda: softmax_cross_entropy(logits, labels, smoothing)[0], logits)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_hand_computed_two_class_case():
    # logits (0, log 3): p = (1/4, 3/4); label 1 -> loss -log(3/4), gradient (1/4, -1/4).
    loss, grad = softmax_cross_entropy(np.array([[0.0, np.log(3.0)]]), np.array([1]))
    assert loss == pytest.approx(-np.log(0.75), rel=1e-15)
    np.testing.assert_allclose(grad, [[0.25, -0.25]], rtol=1e-15)


def test_smoothing_follows_pytorchs_target():
    # C = 2, s = 0.2: target for label 0 is (0.9, 0.1); equal logits give p = (1/2, 1/2).
    loss, grad = softmax_cross_entropy(np.zeros((1, 2)), np.array([0]), smoothing=0.2)
    assert loss == pytest.approx(np.log(2.0), rel=1e-15)  # -(0.9 + 0.1) log(1/2)
    np.testing.assert_allclose(grad, [[0.5 - 0.9, 0.5 - 0.1]], rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_stay_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=dtype)
    loss, grad = softmax_cross_entropy(logits, np.array([1, 0]))
    # Row 1: log p(label) = -2e4. Row 2: the two 1e4 logits share the mass, label gets exp(-2e4).
    assert loss == pytest.approx((2e4 + (2e4 + np.log(2.0))) / 2, rel=1e-6)
    assert grad.dtype == dtype
    np.testing.assert_allclose(grad, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-7)


def test_float32_gradient_keeps_dtype_and_agrees_with_float64():
    logits, labels = batch()
    loss32, grad32 = softmax_cross_entropy(logits.astype(np.float32), labels)
    loss64, grad64 = softmax_cross_entropy(logits, labels)
    assert grad32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-6)
    np.testing.assert_allclose(grad32, grad64, rtol=1e-5, atol=1e-7)


def test_log_softmax_is_normalised_and_shift_invariant():
    logits, _ = batch()
    out = log_softmax(logits)
    np.testing.assert_allclose(np.exp(out).sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(log_softmax(logits + 1e4), out, atol=1e-10)
    np.testing.assert_allclose(out, logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)), rtol=1e-13)


def test_against_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    logits, labels = batch(6, 7, seed=3)
    z = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(z, torch.tensor(labels), label_smoothing=0.1)
    expected.backward()
    loss, grad = softmax_cross_entropy(logits, labels, 0.1)
    assert loss == pytest.approx(expected.item(), rel=1e-13)
    np.testing.assert_allclose(grad, z.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("bad", [5, -1])
def test_label_out_of_range_names_label_and_class_count(bad):
    with pytest.raises(ValueError, match=rf"label {bad} .*5 classes"):
        softmax_cross_entropy(np.zeros((2, 5)), np.array([0, bad]))


@pytest.mark.parametrize("logits, labels, message", [
    (np.zeros((2, 3)), np.array([0.0, 1.0]), "integers"),
    (np.zeros((2, 3)), np.array([0, 1, 2]), r"shape \(2,\)"),
    (np.zeros(3), np.array([0]), "N x C"),
    (np.zeros((2, 3), dtype=np.int64), np.array([0, 1]), "floating"),
])
def test_bad_input_is_rejected(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        softmax_cross_entropy(logits, labels)


@pytest.mark.parametrize("smoothing", [-0.1, 1.0])
def test_bad_smoothing_is_rejected(smoothing):
    with pytest.raises(ValueError, match="smoothing"):
        softmax_cross_entropy(np.zeros((1, 2)), np.array([0]), smoothing)
