"""small_matmul (runtime/kernels/cpu/small_gemm.py): blocked.py's GEMM on the views a fully
connected layer's training passes take (x @ W^T, dy^T @ x, dy @ W), against NumPy's matmul in
float64, with row (4) and column (2L) remainders; and the cases it must decline (left to BLAS). The fc layer's gradients are checked by finite differences in
tests/runtime/test_network.py."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.small_gemm import small_matmul
from cnnlang.runtime.kernels.cpu.workspace import ConvWorkspace


@pytest.mark.parametrize("m, k, n", [(64, 120, 84), (65, 63, 67), (97, 2, 1353)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fc_products_match_numpy(m, k, n, dtype):
    rng = np.random.default_rng(m * n)
    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n, k)).astype(dtype)
    dy = rng.standard_normal((m, n)).astype(dtype)
    ws = ConvWorkspace()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for a, b in ((x, w.T), (dy.T, x), (dy, w)):
        out = np.full((a.shape[0], b.shape[1]), np.nan, dtype)
        assert small_matmul(a, b, out, ws)
        want = a.astype(np.float64) @ b.astype(np.float64)
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        assert np.all(np.abs(out - want) <= tol * scale)


def test_declines_what_it_cannot_take():
    ws = ConvWorkspace()
    a, b = np.ones((64, 128), np.float32), np.ones((128, 64), np.float32)  # 512 k multiply-adds
    out = np.zeros((64, 64), np.float32)
    assert not small_matmul(a[:, ::2], b[:64], out, ws)  # neither contiguous nor a transpose of one
    assert not small_matmul(a.astype(np.float64), b, out, ws)  # mixed dtypes
    assert not small_matmul(a, b, np.zeros((64, 64), np.float32).T, ws)  # out not C-contiguous
    assert not small_matmul(a[:8], b, out[:8], ws)  # tiny (64 k): BLAS runs it on this thread
    big = np.ones((1024, 1024), np.float32)
    assert not small_matmul(big, big, np.zeros((1024, 1024), np.float32), ws)  # beyond the size limit
    assert not out.any()
