"""runtime/kernels/cpu/activation_pool.py: the backward of an activation and the average pooling after it,
against a NumPy reference and bit for bit against the two kernels it replaces (pool.py's backward, then
activation.py's). Finite differences through it: tests/runtime/test_training_fusion.py (a network whose
tanh, sigmoid and relu run inside the pooling after them) and test_network.py's LeNet-5."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu import activation, pool
from cnnlang.runtime.kernels.cpu.activation_pool import activation_avgpool_backward, scratch_shape

KINDS = {"relu": activation.RELU, "tanh": activation.TANH, "sigmoid": activation.SIGMOID}


def reference(y: np.ndarray, dp: np.ndarray, kind: str, kh: int, kw: int) -> np.ndarray:
    spread = np.repeat(np.repeat(dp, kh, axis=1), kw, axis=2) / (kh * kw)
    slope = {"relu": (y > 0).astype(y.dtype), "tanh": 1 - y * y, "sigmoid": y * (1 - y)}[kind]
    return spread * slope


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, window", [((3, 8, 8, 6), (2, 2)), ((2, 6, 9, 16), (3, 1)), ((1, 2, 4, 5), (2, 4))])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_the_reference_and_the_two_kernels(kind, dtype, shape, window, threads):
    rng = np.random.default_rng(1)
    kh, kw = window
    n, h, w, c = shape
    z = rng.standard_normal(shape).astype(dtype)
    y = np.empty_like(z)
    activation.activation_forward(z.reshape(-1), y.reshape(-1), KINDS[kind])
    dp = rng.standard_normal((n, h // kh, w // kw, c)).astype(dtype)
    dz = np.full_like(z, np.nan)
    activation_avgpool_backward(y, dp, dz, KINDS[kind], kh, kw, np.empty(scratch_shape(threads, (h, w, c)), dtype))
    np.testing.assert_allclose(dz, reference(y, dp, kind, kh, kw), rtol=1e-6 if dtype == np.float32 else 1e-14)
    pooled = np.empty_like(z)
    pool.avgpool_backward(dp, pooled, kh, kw, kh, kw, 0, 0, True)
    separate = np.empty_like(z)
    activation.activation_backward(y.reshape(-1), pooled.reshape(-1), separate.reshape(-1), KINDS[kind])
    np.testing.assert_array_equal(dz, separate)

