"""The CUDA backend's generic methods (runtime/cuda/backend.py, runtime/kernels/cuda/memory.py and
the GEMM) against NumPy, including strided channel-slice destinations."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.backend import CPU
from cnnlang.runtime.ops.base import channel_slice


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_allocation_and_round_trip(cuda_backend, dtype):
    b = cuda_backend
    assert b.name == "cuda" and not b.shares_host_memory
    np.testing.assert_array_equal(b.to_host(b.zeros((2, 3), dtype)), np.zeros((2, 3), dtype))
    np.testing.assert_array_equal(b.to_host(b.ones((4,), dtype)), np.ones(4, dtype))
    host = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    device = b.to_device(host)
    host[0, 0, 0] = -1  # to_device copies
    assert b.to_host(device)[0, 0, 0] == 0
    b.upload(host, device)
    np.testing.assert_array_equal(b.to_host(device), host)
    assert b.to_host(device).dtype == dtype and b.is_contiguous(device)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 2, 3, 5)])
def test_fill_copy_add_into_channel_slices(cuda_backend, shape):
    """The same operations on the CPU and the device, into a channel slice [..., 1:3] of a larger
    buffer: the elements outside the slice stay as they were."""
    rng = np.random.default_rng(0)
    parent = rng.standard_normal((*shape[:-1], shape[-1] + 3))
    src = rng.standard_normal((*shape[:-1], 2))
    results = {}
    for backend in (CPU, cuda_backend):
        whole = backend.to_device(parent.copy())  # (the CPU's to_device is the array itself)
        part = channel_slice(whole, 1, 3)  # (numba's device arrays take no Ellipsis)
        assert backend.is_contiguous(part) == (len(shape) == 1) and backend.is_contiguous(whole)
        backend.copy(part, backend.to_device(src))
        backend.add_into(part, backend.to_device(src))
        backend.fill(channel_slice(whole, 0, 1), 5.0)
        results[backend.name] = backend.to_host(whole)
    expected = parent.copy()
    expected[..., 1:3] = 2 * src
    expected[..., :1] = 5.0
    np.testing.assert_array_equal(results["cpu"], expected)
    np.testing.assert_array_equal(results["cuda"], expected)


def test_copy_rejects_mismatched_shapes(cuda_backend):
    with pytest.raises(ValueError, match="shapes differ"):
        cuda_backend.copy(cuda_backend.zeros((2, 3), np.float32), cuda_backend.zeros((3, 2), np.float32))


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_with_transposes_matches_numpy(cuda_backend, trans_a, trans_b):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 5) if trans_a else (5, 3))
    b = rng.standard_normal((4, 3) if trans_b else (3, 4))
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    got = cuda_backend.to_host(cuda_backend.matmul(cuda_backend.to_device(a), cuda_backend.to_device(b),
                                                   trans_a=trans_a, trans_b=trans_b))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(CPU.matmul(a, b, trans_a=trans_a, trans_b=trans_b), expected, rtol=1e-12)


def test_rng_keys_are_seeded(cuda_backend):
    first, second = cuda_backend.rng(7), cuda_backend.rng(7)
    keys = [first.next_key() for _ in range(3)]
    assert keys == [second.next_key() for _ in range(3)] and len(set(keys)) == 3
    assert keys != [cuda_backend.rng(8).next_key() for _ in range(3)]


def test_a_numpy_too_new_for_numba_cuda_is_named_with_its_fix(monkeypatch):
    """numba-cuda 0.30.4 compiles nothing under numpy 2.5 (an H200 run met it): the probe's
    one-line reason says which numpy and what to install, not numba's internal AttributeError."""
    from cnnlang.runtime.backend import DeviceError
    from cnnlang.runtime.cuda import device
    from cnnlang.runtime.kernels.cuda import memory

    def fails(array, value):
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(memory, "fill", fails)
    with pytest.raises(DeviceError, match=r"numpy .*pip install 'numpy<2.5'"):
        device._probe((13, 0))
