"""Batchnorm, dropout and LRN kernels (runtime/kernels/cpu/norm.py) against NumPy, running-stat
updates against hand-computed numbers, and every backward by float64 central differences
(batchnorm in training mode through the batch statistics; also with the fused relu, and with a
fused residual add and relu)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.norm import batchnorm_backward, batchnorm_forward, dropout_apply, lrn_backward, lrn_forward
from gradcheck import central_difference, stacked_central_difference

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS = 1e-5


# ---- batchnorm ---------------------------------------------------------------------------


class BN:
    """One channel-last batchnorm with its running statistics, calling the kernels."""

    def __init__(self, channels, dtype=np.float64, momentum=0.1):
        self.momentum = momentum
        self.running_mean = np.zeros(channels, dtype)
        self.running_var = np.ones(channels, dtype)
        self.mean = np.empty(channels, dtype)
        self.invstd = np.empty(channels, dtype)

    def forward(self, x, gamma, beta, train, relu=False):
        out = np.empty_like(x)
        batchnorm_forward(x, gamma, beta, self.running_mean, self.running_var, EPS, self.momentum, train, out,
                          self.mean, self.invstd, relu=relu)  # fmt: skip
        return out

    def backward(self, x, dy, gamma, train, beta=None):
        """With ``beta``: the backward of the forward with the fused relu."""
        dx, dgamma, dbeta = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma)
        batchnorm_backward(x, dy, gamma, self.mean, self.invstd, train, dx, dgamma, dbeta, relu=beta is not None, beta=beta)
        return dx, dgamma, dbeta


def ref_batchnorm(x, gamma, beta, mean, var):
    return (x - mean) / np.sqrt(var + EPS) * gamma + beta


def random_bn(seed, rows, channels, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, channels)) * 2 + rng.standard_normal(channels) * 3).astype(dtype)
    gamma = (rng.standard_normal(channels) + 1).astype(dtype)
    beta = rng.standard_normal(channels).astype(dtype)
    return rng, x, gamma, beta


@SETTINGS
@given(st.integers(2, 200), st.integers(1, 5), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_batchnorm_train_forward_and_running_stats(rows, channels, dtype, seed):
    _, x, gamma, beta = random_bn(seed, rows, channels, dtype)
    bn = BN(channels, dtype, momentum=0.25)
    out = bn.forward(x, gamma, beta, True)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=0), x64.var(axis=0)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref_batchnorm(x64, gamma, beta, mean, var), rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.running_mean, 0.25 * mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * x64.var(axis=0, ddof=1), rtol=tol, atol=tol)


def test_batchnorm_running_stats_by_hand():
    # Channel 0 holds 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
    # Channel 1 holds 2, 2, 2, 2: mean 2, variance 0.
    x = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0], [4.0, 2.0]])
    bn = BN(2, momentum=0.1)
    out = bn.forward(x, np.ones(2), np.zeros(2), True)
    np.testing.assert_allclose(bn.running_mean, [0.25, 0.2])
    np.testing.assert_allclose(bn.running_var, [0.9 + 0.1 * 5 / 3, 0.9])
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 2.5) / np.sqrt(1.25 + EPS))
    np.testing.assert_allclose(out[:, 1], 0.0)
    # A second step moves from there: 0.9 * 0.25 + 0.1 * 2.5.
    bn.forward(x, np.ones(2), np.zeros(2), True)
    np.testing.assert_allclose(bn.running_mean, [0.9 * 0.25 + 0.25, 0.9 * 0.2 + 0.2])


def test_batchnorm_eval_uses_running_stats_and_leaves_them():
    x = np.array([[1.0, -1.0], [3.0, 5.0]])
    bn = BN(2)
    bn.running_mean[:] = [1.0, 2.0]
    bn.running_var[:] = [4.0, 9.0]
    out = bn.forward(x, np.array([2.0, 1.0]), np.array([0.5, 0.0]), False)
    np.testing.assert_allclose(out, [[0.5, -3 / np.sqrt(9 + EPS)], [2 * 2 / np.sqrt(4 + EPS) + 0.5, 3 / np.sqrt(9 + EPS)]])
    np.testing.assert_array_equal(bn.running_mean, [1.0, 2.0])
    np.testing.assert_array_equal(bn.running_var, [4.0, 9.0])


def test_batchnorm_float32_large_mean_keeps_the_variance():
    # |mean| / std = 1e4: a one-pass E[x^2] - E[x]^2 in float32 would lose the variance.
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((4096, 3))).astype(np.float32)
    bn = BN(3, np.float32)
    out = bn.forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), True)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(out, (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + EPS), atol=2e-3)


def ref_batchnorm_backward(x, dy, gamma, mean, invstd):
    """Training-mode batchnorm backward in float64, by the textbook formula."""
    xhat = (x - mean) * invstd
    dbeta, dgamma = dy.sum(0), (dy * xhat).sum(0)
    return gamma * invstd * (dy - dbeta / len(x) - xhat * dgamma / len(x)), dgamma, dbeta


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, channels", [(4096, 16), (2048, 3), (6, 16), (4098, 16), (640, 64)])
def test_batchnorm_side_by_side_rows_against_numpy(rows, channels, dtype):
    # rows a multiple of 32 // channels: the sums run over k rows side by side (_wide_rows), in several
    # chunks of several 16-row blocks; 4098 and 6 rows at 16 channels: k = 2 too; 64 channels: k = 1
    rng, x, gamma, beta = random_bn(7, rows, channels, dtype)
    x += np.asarray(100, dtype)  # |mean| >> std: the sums' blocks must not lose the variance
    bn = BN(channels, dtype, momentum=0.25)
    out = bn.forward(x, gamma, beta, True, relu=True)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=0), x64.var(axis=0)
    tol = 2e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(bn.mean, mean, rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.invstd, 1 / np.sqrt(var + EPS), rtol=tol, atol=tol)
    np.testing.assert_allclose(out, np.maximum(ref_batchnorm(x64, gamma, beta, mean, var), 0), rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * x64.var(axis=0, ddof=1), rtol=tol, atol=tol)
    dy = rng.standard_normal((rows, channels)).astype(dtype)
    masked = np.where(out > 0, dy, 0).astype(np.float64)
    want = ref_batchnorm_backward(x64, masked, gamma.astype(np.float64), bn.mean.astype(np.float64),
                                  bn.invstd.astype(np.float64))
    got = bn.backward(x, dy, gamma, True, beta=beta)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol * 10 * np.abs(b).max())
    # a dy that is not contiguous: x's rows are then not put side by side either (one k for both)
    strided = bn.backward(x, np.asfortranarray(dy), gamma, True, beta=beta)
    for a, b in zip(strided, want):
        np.testing.assert_allclose(a, b, rtol=tol * 10, atol=tol * 10 * np.abs(b).max())


@SETTINGS
@given(st.sampled_from([(20, 3), (4, 16), (8, 8)]), st.booleans(), st.booleans(), st.integers(0, 99))
def test_batchnorm_side_by_side_backward_finite_differences(shape, train, relu, seed):
    # shapes whose rows are a multiple of 32 // channels: the side-by-side sums (_wide_rows)
    rows, channels = shape
    rng, x, gamma, beta = random_bn(seed, rows, channels)
    weights = rng.standard_normal((rows, channels))
    bn = BN(channels)

    def loss(x_, gamma_, beta_):
        return float((bn.forward(x_, gamma_, beta_, train, relu=relu) * weights).sum())

    if relu:
        y = bn.forward(x, gamma, beta, train)
        assume(np.abs(y).min() > 1e-4)
    loss(x, gamma, beta)
    dx, dgamma, dbeta = bn.backward(x, weights, gamma, train, beta=beta if relu else None)
    for got, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(got, central_difference(lambda: loss(x, gamma, beta), wrt), rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(2, 8), st.integers(1, 3), st.booleans(), st.booleans(), st.integers(0, 99))
def test_batchnorm_backward_finite_differences(rows, channels, train, relu, seed):
    rng, x, gamma, beta = random_bn(seed, rows, channels)
    weights = rng.standard_normal((rows, channels))
    bn = BN(channels)
    bn.running_mean[:] = rng.standard_normal(channels)
    bn.running_var[:] = rng.random(channels) + 0.5
    saved = bn.running_mean.copy(), bn.running_var.copy()

    def loss(x_, gamma_, beta_):
        bn.running_mean[:], bn.running_var[:] = saved  # the training forward moves them
        return float((bn.forward(x_, gamma_, beta_, train, relu=relu) * weights).sum())

    if relu:
        y = bn.forward(x, gamma, beta, train)
        assume(np.abs(y).min() > 1e-4)  # no value on the kink, where the difference sees half a slope
    loss(x, gamma, beta)
    dx, dgamma, dbeta = bn.backward(x, weights, gamma, train, beta=beta if relu else None)
    np.testing.assert_allclose(dx, central_difference(lambda: loss(x, gamma, beta), x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dgamma, central_difference(lambda: loss(x, gamma, beta), gamma), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, central_difference(lambda: loss(x, gamma, beta), beta), rtol=1e-5, atol=1e-7)


@SETTINGS
@given(st.integers(2, 200), st.integers(1, 5), st.sampled_from([np.float32, np.float64]), st.booleans(), st.integers(0, 99))
def test_batchnorm_relu_is_relu_of_batchnorm_with_the_same_statistics(rows, channels, dtype, train, seed):
    rng, x, gamma, beta = random_bn(seed, rows, channels, dtype)
    plain, fused = BN(channels, dtype, momentum=0.25), BN(channels, dtype, momentum=0.25)
    running = rng.standard_normal(channels), rng.random(channels) + 0.5
    for bn in (plain, fused):
        bn.running_mean[:], bn.running_var[:] = running
    y = plain.forward(x, gamma, beta, train)
    z = fused.forward(x, gamma, beta, train, relu=True)
    np.testing.assert_array_equal(z, np.where(y > 0, y, 0))  # the same arithmetic: the same bits
    for a, b in ((plain.running_mean, fused.running_mean), (plain.running_var, fused.running_var),
                 (plain.mean, fused.mean), (plain.invstd, fused.invstd)):
        np.testing.assert_array_equal(a, b)
    # backward: the plain batchnorm's of the relu-masked gradient, bit for bit
    dy = rng.standard_normal((rows, channels)).astype(dtype)
    want = plain.backward(x, np.where(y > 0, dy, 0).astype(dtype), gamma, train)
    got = fused.backward(x, dy, gamma, train, beta=beta)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_relu_keeps_nan_and_passes_it_no_gradient():
    x = np.array([[np.nan, 1.0], [0.0, -1.0], [2.0, 3.0]])
    bn = BN(2)
    z = bn.forward(x, np.ones(2), np.zeros(2), False, relu=True)
    assert np.isnan(z[0, 0]) and z[1, 1] == 0.0 and z[0, 1] > 0
    dx, _, _ = bn.backward(x, np.ones((3, 2)), np.ones(2), False, beta=np.zeros(2))
    assert dx[1, 1] == 0.0 and dx[0, 1] > 0  # relu' = [z > 0]
    # at NaN: relu's gradient is 0 (as activation_backward's), and batchnorm's of it what it was
    want, _, _ = bn.backward(x, np.where(z > 0, 1.0, 0.0), np.ones(2), False)
    np.testing.assert_array_equal(dx, want)
    with pytest.raises(ValueError, match="beta"):
        batchnorm_backward(x, x, np.ones(2), bn.mean, bn.invstd, False, np.empty_like(x), np.empty(2), np.empty(2), relu=True)


def forward_with_skip(bn, x, gamma, beta, train, skip, relu):
    out = np.empty_like(x)
    batchnorm_forward(x, gamma, beta, bn.running_mean, bn.running_var, EPS, bn.momentum, train, out, bn.mean,
                      bn.invstd, relu=relu, skip=skip)  # fmt: skip
    return out


def backward_with_skip(bn, x, dy, gamma, train, y):
    """The backward of forward_with_skip with the relu: dx, dgamma, dbeta and the skip's gradient dz."""
    dx, dgamma, dbeta, dz = np.empty_like(x), np.empty_like(gamma), np.empty_like(gamma), np.empty_like(x)
    batchnorm_backward(x, dy, gamma, bn.mean, bn.invstd, train, dx, dgamma, dbeta, y=y, dz=dz)
    return dx, dgamma, dbeta, dz


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, channels", [(4096, 16), (2048, 3), (6, 16), (640, 64), (7, 5)])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_with_a_skip_is_the_add_and_relu_after_it(rows, channels, train, dtype):
    # the residual add (and its relu) fused into the batchnorm: against NumPy, and bit for bit the
    # unfused batchnorm, add and relu (the same arithmetic), backward included
    rng, x, gamma, beta = random_bn(3, rows, channels, dtype)
    skip = rng.standard_normal((rows, channels)).astype(dtype)
    plain, fused = BN(channels, dtype), BN(channels, dtype)
    y = plain.forward(x, gamma, beta, train)
    for relu in (False, True):
        fused.running_mean[:], fused.running_var[:] = 0, 1
        z = forward_with_skip(fused, x, gamma, beta, train, skip, relu)
        total = y + skip
        np.testing.assert_array_equal(z, np.maximum(total, 0) if relu else total)
    np.testing.assert_array_equal(fused.running_var, plain.running_var)
    x64 = x.astype(np.float64)
    mean, var = (x64.mean(0), x64.var(0)) if train else (np.zeros(channels), np.ones(channels))
    tol = 2e-5 if dtype == np.float32 else 1e-12
    want = np.maximum(ref_batchnorm(x64, gamma, beta, mean, var) + skip, 0)
    np.testing.assert_allclose(z, want, rtol=tol, atol=tol * np.abs(want).max())
    dy = rng.standard_normal((rows, channels)).astype(dtype)
    masked = np.where(z > 0, dy, 0).astype(dtype)
    dx, dgamma, dbeta, dz = backward_with_skip(fused, x, dy, gamma, train, z)
    np.testing.assert_array_equal(dz, masked)
    for a, b in zip((dx, dgamma, dbeta), plain.backward(x, masked, gamma, train)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="y and dz"):
        batchnorm_backward(x, dy, gamma, fused.mean, fused.invstd, train, dx, dgamma, dbeta, y=z)


@SETTINGS
@given(st.sampled_from([(20, 3), (4, 16), (6, 2), (3, 1)]), st.booleans(), st.integers(0, 99))
def test_batchnorm_with_a_skip_finite_differences(shape, train, seed):
    rows, channels = shape
    rng, x, gamma, beta = random_bn(seed, rows, channels)
    skip = rng.standard_normal((rows, channels))
    weights = rng.standard_normal((rows, channels))
    bn = BN(channels)

    def loss():
        bn.running_mean[:], bn.running_var[:] = 0, 1
        return float((forward_with_skip(bn, x, gamma, beta, train, skip, True) * weights).sum())

    z = forward_with_skip(bn, x, gamma, beta, train, skip, False)
    assume(np.abs(z).min() > 1e-4)  # no value on the relu's kink
    loss()
    got = backward_with_skip(bn, x, weights, gamma, train, forward_with_skip(bn, x, gamma, beta, train, skip, True))
    for grad, wrt in zip(got, (x, gamma, beta, skip)):
        np.testing.assert_allclose(grad, central_difference(loss, wrt), rtol=1e-5, atol=1e-7)


# ---- dropout -----------------------------------------------------------------------------


def dropout(x, uniform, p):
    out = np.empty_like(x)
    dropout_apply(x, uniform, p, 1 / (1 - p), out)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_keeps_one_minus_p_and_scales(p, dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(100_000).astype(dtype)
    uniform = rng.random(x.size)
    out = dropout(x, uniform, p)
    kept = uniform >= p
    np.testing.assert_allclose(out[kept], x[kept] / (1 - p), rtol=1e-6)
    assert (out[~kept] == 0).all()
    assert abs(kept.mean() - (1 - p)) < 0.01


def test_dropout_lets_non_finite_values_through_as_pytorch():
    out = dropout(np.array([np.nan, np.inf, 1.0]), np.array([0.0, 0.0, 0.0]), 0.5)  # all dropped
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] == 0.0


def test_dropout_backward_finite_differences():
    rng = np.random.default_rng(2)
    x, weights, uniform = rng.standard_normal(12), rng.standard_normal(12), rng.random(12)
    dx = dropout(weights, uniform, 0.3)  # backward is the same masked scaling, applied to dy
    numeric = central_difference(lambda: float((dropout(x, uniform, 0.3) * weights).sum()), x)
    np.testing.assert_allclose(dx, numeric, rtol=1e-7, atol=1e-9)


# ---- local response normalisation --------------------------------------------------------


def ref_lrn(x, size, alpha, beta, k):
    """PyTorch's formulation: square, pad the channel axis with size//2 zeros before and
    (size-1)//2 after, average over windows of `size` (always dividing by size)."""
    rows, channels = x.shape
    padded = np.pad(x * x, ((0, 0), (size // 2, (size - 1) // 2)))
    windows = np.stack([padded[:, c : c + size].sum(axis=1) for c in range(channels)], axis=1)
    return x / (k + alpha * windows / size) ** beta


def lrn(x, size, alpha, beta, k):
    out, denom = np.empty_like(x), np.empty_like(x)
    lrn_forward(x, out, denom, size, alpha, beta, k)
    return out, denom


lrn_args = st.tuples(st.integers(1, 6), st.sampled_from([1e-4, 0.5, 2.0]), st.sampled_from([0.5, 0.75, 1.3]),
                     st.sampled_from([1.0, 2.0]))  # fmt: skip


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 8), lrn_args, st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_lrn_forward_matches_reference(rows, channels, args, dtype, seed):
    x = (np.random.default_rng(seed).standard_normal((rows, channels)) * 2).astype(dtype)
    out, _ = lrn(x, *args)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out, ref_lrn(x.astype(np.float64), *args), rtol=tol, atol=tol)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 8), lrn_args, st.integers(0, 99))
def test_lrn_backward_finite_differences(rows, channels, args, seed):
    size, alpha, beta, k = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, channels)) * 2
    weights = rng.standard_normal((rows, channels))
    _, denom = lrn(x, *args)
    dx = np.empty_like(x)
    lrn_backward(x, weights, denom, dx, size, alpha, beta)

    def losses(stack):  # rows are independent: all copies as one tall input
        out, _ = lrn(stack.reshape(-1, channels), *args)
        return (out.reshape(stack.shape) * weights).sum(axis=(1, 2))

    np.testing.assert_allclose(dx, stacked_central_difference(losses, x), rtol=1e-6, atol=1e-8)


def test_lrn_window_by_hand():
    # size 2: the window of channel c is c - 1 .. c (size//2 before, (size-1)//2 = 0 after).
    x = np.array([[1.0, 2.0, 3.0]])
    out, denom = lrn(x, 2, 1.0, 1.0, 1.0)
    np.testing.assert_allclose(denom, [[1 + 1 / 2, 1 + 5 / 2, 1 + 13 / 2]])
    np.testing.assert_allclose(out, x / denom)
