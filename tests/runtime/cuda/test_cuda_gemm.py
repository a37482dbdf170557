"""The GPU GEMM (runtime/kernels/cuda/gemm.py) against NumPy: every transpose pair in float32 and
float64, shapes that fill no tile evenly, strided operands and outputs, accumulation and the
fused bias + activation epilogue, and which implementation ran. Under the simulator the tiled
numba kernel runs (CuPy cannot wrap simulated arrays); on a GPU with CuPy, cuBLAS does unless
CNNLANG_GEMM=numba."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from cnnlang.errors import UsageError
from cnnlang.runtime.kernels.cuda import gemm as gemm_module
from cnnlang.runtime.kernels.cuda.epilogue import NONE, RELU, SIGMOID, TANH, activation_code
from cnnlang.runtime.kernels.cuda.gemm import TILE, gemm

SMALL = (8, 8, 4, 2, 2)  # several blocks and K slices on tiny shapes: cheap under the simulator
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def operands(m, n, k, trans_a, trans_b, dtype, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    return a, b, (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_every_transpose_pair_on_uneven_shapes(trans_a, trans_b, dtype):
    a, b, expected = operands(11, 10, 9, trans_a, trans_b, dtype)
    got = gemm(cuda.to_device(a), cuda.to_device(b), trans_a=trans_a, trans_b=trans_b, tile=SMALL).copy_to_host()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_default_tile_over_two_row_blocks_and_two_k_slices(dtype):
    m, n, k = TILE[0] + 3, 5, TILE[2] + 1
    a, b, expected = operands(m, n, k, False, True, dtype, seed=1)
    got = gemm(cuda.to_device(a), cuda.to_device(b), trans_b=True).copy_to_host()
    np.testing.assert_allclose(got, expected, **TOLERANCE[dtype])


def test_strided_operands_and_output_accumulate_with_bias_and_relu():
    rng = np.random.default_rng(2)
    big_a = rng.standard_normal((7, 12))
    big_b = rng.standard_normal((9, 12))
    big_out = rng.standard_normal((7, 15))
    bias = rng.standard_normal(6)
    a, b = big_a[:, 2:7], big_b[3:9, 4:9]  # 7 x 5 and 6 x 5 column blocks (strided rows)
    out_dev = cuda.to_device(big_out)
    gemm(cuda.to_device(big_a)[:, 2:7], cuda.to_device(big_b)[3:9, 4:9], out=out_dev[:, 8:14], trans_b=True,
         accumulate=True, bias=cuda.to_device(bias), activation=RELU, tile=SMALL)  # fmt: skip
    expected = big_out.copy()
    expected[:, 8:14] = np.maximum(a @ b.T + big_out[:, 8:14] + bias, 0)
    np.testing.assert_allclose(out_dev.copy_to_host(), expected, rtol=1e-12, atol=1e-12)  # the rest untouched


@pytest.mark.parametrize("name, f", [("tanh", np.tanh), ("sigmoid", lambda v: 1 / (1 + np.exp(-v)))])
def test_tanh_and_sigmoid_epilogues_in_float32(name, f):
    a, b, expected = operands(5, 4, 3, False, False, np.float32, seed=3)
    got = gemm(cuda.to_device(a), cuda.to_device(b), activation=activation_code(name), tile=SMALL).copy_to_host()
    np.testing.assert_allclose(got, f(expected), rtol=1e-5, atol=1e-6)


def test_relu_lets_nan_through_and_an_empty_k_gives_the_bias():
    a = np.array([[np.nan, 1.0], [-1.0, -1.0]])
    got = gemm(cuda.to_device(a), cuda.to_device(np.ones((2, 1))), activation=RELU, tile=SMALL).copy_to_host()
    assert np.isnan(got[0, 0]) and got[1, 0] == 0
    bias = np.array([-1.0, 2.0])
    out = gemm(cuda.to_device(np.zeros((3, 0))), cuda.to_device(np.zeros((0, 2))), bias=cuda.to_device(bias),
               activation=RELU, tile=SMALL)  # fmt: skip
    np.testing.assert_array_equal(out.copy_to_host(), [[0.0, 2.0]] * 3)


def test_bad_operands_are_refused():
    a, b = cuda.to_device(np.zeros((3, 4))), cuda.to_device(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="inner sizes"):
        gemm(a, b)
    with pytest.raises(TypeError, match="one dtype"):
        gemm(a, cuda.to_device(np.zeros((4, 2), np.float32)))
    with pytest.raises(ValueError, match="out must be"):
        gemm(a, cuda.to_device(np.zeros((4, 2))), out=cuda.to_device(np.zeros((2, 3))))


def test_the_record_says_which_gemm_ran_and_the_policy_is_checked(monkeypatch):
    gemm_module.reset_gemm_record()
    a = cuda.to_device(np.ones((2, 2)))
    monkeypatch.setattr(gemm_module, "_policy", "numba")
    gemm(a, a, tile=SMALL)
    gemm(a, a, tile=SMALL)
    assert gemm_module.gemm_record() == {"numba": 2}
    with pytest.raises(UsageError, match="unknown GEMM"):
        gemm_module.set_gemm_policy("fastest")
    if not hasattr(a, "__cuda_array_interface__"):  # simulated arrays: cuBLAS cannot take them
        gemm_module.set_gemm_policy("cublas")
        with pytest.raises(UsageError, match="needs CuPy"):
            gemm(a, a)
    assert NONE == 0 and {TANH, SIGMOID} == {activation_code("tanh"), activation_code("sigmoid")}
