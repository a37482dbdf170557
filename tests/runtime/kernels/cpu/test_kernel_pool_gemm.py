"""pool_gemm.matmul against NumPy in float64: every way it cuts a product (rows, columns, the K sum,
stacked matrices), every operand layout the conv kernels hand it, and the cases it leaves to
np.matmul."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu import pool_gemm

needs_pool = pytest.mark.skipif(not pool_gemm.available(), reason="NumPy's BLAS is not scipy-openblas64 with its own "
                                "threads: pool_gemm.matmul is np.matmul here")


@pytest.fixture
def splits(monkeypatch):
    """The split of each product that went to Numba's pool."""
    seen: list[int] = []
    original = pool_gemm._gemm_tasks

    def spy(*args):
        seen.append(args[6])
        return original(*args)

    monkeypatch.setattr(pool_gemm, "_gemm_tasks", spy)
    return seen


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.matmul(a.astype(np.float64), b.astype(np.float64))


def layouts(rng, rows: int, cols: int, dtype) -> list[np.ndarray]:
    """The same values row-major, column-major (a transpose) and as a column slice."""
    m = rng.standard_normal((rows, cols)).astype(dtype)
    wide = np.zeros((rows, cols + 5), dtype)
    wide[:, 2 : cols + 2] = m
    return [m, np.ascontiguousarray(m.T).T, wide[:, 2 : cols + 2]]


@needs_pool
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, expected_splits", [((700, 64, 32), {0}), ((40, 96, 900), {1}),
                                                   ((16, 12000, 24), {1, 2})])  # K parts where K is both outer axes
def test_each_split_matches_numpy_in_every_layout(splits, dtype, shape, expected_splits):
    rng = np.random.default_rng(0)
    M, K, N = shape
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    for a in layouts(rng, M, K, dtype):
        for b in layouts(rng, K, N, dtype):
            out = np.full((M, N + 3), np.nan, dtype)
            result = pool_gemm.matmul(a, b, out[:, 1 : N + 1])
            expected = reference(a, b)
            assert result.base is out or result.base is out.base
            assert np.abs(out[:, 1 : N + 1] - expected).max() <= tolerance * np.abs(expected).max()
            assert np.isnan(out[:, 0]).all() and np.isnan(out[:, N + 1 :]).all()  # nothing outside the slice
    assert set(splits) == expected_splits


@needs_pool
def test_a_weight_gradient_sums_parts_of_k(splits):
    rng = np.random.default_rng(4)
    dy = rng.standard_normal((20000, 24)).astype(np.float32)  # pixels x out channels
    x = rng.standard_normal((20000, 16)).astype(np.float32)  # pixels x in channels
    out = np.empty((24, 16), np.float32)
    pool_gemm.matmul(dy.T, x, out)
    expected = reference(dy.T, x)
    assert np.abs(out - expected).max() <= 1e-5 * np.abs(expected).max()
    assert splits == [2]


@needs_pool
def test_stacked_products_one_per_task(splits):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((16, 300, 64)).astype(np.float32)
    b = rng.standard_normal((16, 64, 48)).astype(np.float32)
    out = np.empty((16, 300, 48), np.float32)
    pool_gemm.matmul(a, b, out)
    expected = reference(a, b)
    assert np.abs(out - expected).max() <= 1e-5 * np.abs(expected).max()
    # transposed views of the stack, as the Winograd weight gradient passes them
    mt = np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1)
    pool_gemm.matmul(mt, b, out)
    assert np.abs(out - expected).max() <= 1e-5 * np.abs(expected).max()
    assert splits == [0, 0]


def test_small_one_dimensional_mixed_and_overlapping_products_are_numpys(splits):
    rng = np.random.default_rng(2)
    small_a, small_b = rng.standard_normal((8, 8)), rng.standard_normal((8, 8))
    ones, rows = np.ones(5000), rng.standard_normal((5000, 64))
    big_a = rng.standard_normal((600, 64)).astype(np.float32)
    square = rng.standard_normal((300, 300))
    in_place = square.copy()
    for a, b, out in [(small_a, small_b, np.empty((8, 8))), (ones, rows, np.empty(64)),
                      (big_a, rng.standard_normal((64, 32)), np.empty((600, 32))), (in_place, square, in_place)]:
        expected = np.matmul(a, b)
        np.testing.assert_allclose(pool_gemm.matmul(a, b, out), expected, rtol=1e-12)
    assert splits == []


@needs_pool
@pytest.mark.parametrize("blas_threads", [1, 2, 3])
def test_openblas_thread_count_is_restored(blas_threads):
    openblas = pool_gemm._OPENBLAS
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2000, 64)).astype(np.float32)
    b = rng.standard_normal((64, 64)).astype(np.float32)
    previous = openblas.get_threads()
    openblas.set_threads(blas_threads)
    try:
        pool_gemm.matmul(a, b, np.empty((2000, 64), np.float32))
        assert openblas.get_threads() == blas_threads
    finally:
        openblas.set_threads(previous)


def test_the_environment_switch_leaves_every_product_to_numpy():
    code = "from cnnlang.runtime.kernels.cpu import pool_gemm; print(pool_gemm.available())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "CNNLANG_POOL_GEMM": "0"})
    assert done.stdout.strip() == "False"
