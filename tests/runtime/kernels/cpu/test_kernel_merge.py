"""The training sums (runtime/kernels/cpu/merge.py) against NumPy, and the CPU backend's one-pass
``add`` (the plan's fan-out gradient sum) against the base class's copy-then-add."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.backend import CPU, Backend
from cnnlang.runtime.kernels.cpu.merge import add2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [False, True])
def test_add2_is_numpy_add_then_relu(dtype, relu):
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(1000).astype(dtype) for _ in range(2))
    a[:3] = [np.nan, np.inf, -np.inf]
    out = np.empty_like(a)
    add2(a, b, out, relu)
    want = a + b
    if relu:
        want = np.where(np.isnan(want) | (want > 0), want, 0)  # NaN stays NaN, as relu_forward
    np.testing.assert_array_equal(out, want)
    assert (out == 0).any() == relu


def test_add2_may_write_into_an_input():
    a = np.arange(-3.0, 3.0)
    b = np.ones(6)
    add2(a, b, a, True)
    np.testing.assert_array_equal(a, [0, 0, 0, 1, 2, 3])


def test_cpu_backend_add_matches_copy_then_add():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))
    one, two = np.empty_like(a), np.empty_like(a)
    CPU.add(one, a, b)
    Backend.add(CPU, two, a, b)  # the base class's copy, then add_into
    np.testing.assert_array_equal(one, two)
    strided = np.empty((2, 5, 6))[..., :3]  # not contiguous: NumPy's add
    CPU.add(strided, a, b)
    np.testing.assert_array_equal(strided, a + b)
