"""The CUDA backend: arrays are numba.cuda device arrays (``FakeCUDAArray`` under Numba's CUDA
simulator), kernels are ``runtime/kernels/cuda``; the host copies of parameters stay NumPy."""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from numba import cuda

from ..backend import Backend, OutOfDeviceMemory, Shape
from ..kernels.cuda import gemm, memory
from .device import is_out_of_memory


class KeyStream:
    """Seeded 64-bit keys, one per call: kernels draw counter-based random numbers from a key
    (dropout), so a run is reproducible without generator state on the device."""

    def __init__(self, seed: Any):
        self._generator = np.random.default_rng(seed)

    def next_key(self) -> int:
        return int(self._generator.integers(0, 2**63, dtype=np.int64))


class CUDABackend(Backend):
    name = "cuda"
    xp = None  # no NumPy-like module: everything goes through the methods below
    shares_host_memory = False

    def __init__(self) -> None:
        importlib.import_module("cnnlang.runtime.cuda.ops")  # registers the CUDA ops

    # -- allocation
    def empty(self, shape: Shape, dtype: Any) -> Any:
        dtype = np.dtype(dtype)
        shape = (int(shape),) if np.isscalar(shape) else tuple(shape)
        try:
            return cuda.device_array(shape, dtype)
        except Exception as error:
            if is_out_of_memory(error):
                raise OutOfDeviceMemory(int(np.prod(shape)) * dtype.itemsize) from None
            raise

    def zeros(self, shape: Shape, dtype: Any) -> Any:
        array = self.empty(shape, dtype)
        memory.fill(array, 0)
        return array

    def ones(self, shape: Shape, dtype: Any) -> Any:
        array = self.empty(shape, dtype)
        memory.fill(array, 1)
        return array

    # -- host <-> device
    def to_device(self, host: np.ndarray) -> Any:
        host = np.ascontiguousarray(host)
        device = self.empty(host.shape, host.dtype)
        device.copy_to_device(host)
        return device

    def to_host(self, array: Any) -> np.ndarray:
        return np.ascontiguousarray(array.copy_to_host())

    def upload(self, host: np.ndarray, device: Any) -> None:
        host = np.ascontiguousarray(host, dtype=device.dtype)
        if device.is_c_contiguous():
            device.copy_to_device(host)
        else:
            memory.copy(device, self.to_device(host))

    # -- memory
    def fill(self, array: Any, value: float) -> None:
        memory.fill(array, value)

    def copy(self, dst: Any, src: Any) -> None:
        memory.copy(dst, src)

    def add_into(self, dst: Any, src: Any) -> None:
        memory.add_into(dst, src)

    def is_contiguous(self, array: Any) -> bool:
        return bool(array.is_c_contiguous())

    def synchronize(self) -> None:
        cuda.synchronize()

    def memory_info(self) -> tuple[int, int] | None:
        context = cuda.current_context()
        if hasattr(context, "deallocations"):  # Numba frees in batches: count what was dropped
            context.deallocations.clear()
        free, total = context.get_memory_info()
        if not np.isfinite([free, total]).all():  # the simulator has no memory of its own
            return None
        return int(free), int(total)

    # -- computing
    def rng(self, seed: Any) -> KeyStream:
        return KeyStream(seed)

    def matmul(self, a: Any, b: Any, out: Any = None, trans_a: bool = False, trans_b: bool = False) -> Any:
        if out is None:
            rows = a.shape[1] if trans_a else a.shape[0]
            columns = b.shape[0] if trans_b else b.shape[1]
            out = self.empty((rows, columns), a.dtype)
        return gemm.gemm(a, b, out, trans_a=trans_a, trans_b=trans_b)
