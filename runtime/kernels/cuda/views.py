"""Views of device arrays that numba's device arrays cannot reshape into by themselves, and the
scratch buffers convolutions share on the device."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda
from numba.core import config


def channel_rows(array, channels: int):
    """``array`` (N x ... x C, C-contiguous or a channel slice of a C-contiguous array: what a
    producer writing into its part of a concat buffer gets) as a (pixels, C) view with unit
    stride along C. Numba reshapes only contiguous arrays, so the view is built from the strides."""
    if array.is_c_contiguous():
        return array.reshape(-1, channels)
    shape, strides, item = tuple(array.shape), tuple(array.strides), array.dtype.itemsize
    # the leading axes must merge into one (axes of length 1 have no say)
    outer = [(size, stride) for size, stride in zip(shape[:-1], strides[:-1]) if size > 1]
    nested = all(outer[i][1] == outer[i + 1][1] * outer[i + 1][0] for i in range(len(outer) - 1))
    if shape[-1] != channels or (channels > 1 and strides[-1] != item) or not nested:
        raise ValueError("out must be C-contiguous, or a channel slice of a C-contiguous array")
    rows = math.prod(shape[:-1])
    row_stride = outer[-1][1] if outer else channels * item
    return as_strided(array, (rows, channels), (row_stride, item))


def with_unit_axis(array, axis: int):
    """``array`` with a new axis of length 1 at ``axis`` (a view, whatever its strides)."""
    shape, strides = list(array.shape), list(array.strides)
    shape.insert(axis, 1)
    strides.insert(axis, strides[axis] * shape[axis + 1] if axis < len(strides) else array.dtype.itemsize)
    return as_strided(array, tuple(shape), tuple(strides))


def as_strided(array, shape: tuple[int, ...], strides: tuple[int, ...]):
    """A view of the device array ``array`` from its first element with the given shape and byte
    strides; the caller keeps it inside ``array``'s elements."""
    if config.ENABLE_CUDASIM:
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

        return FakeCUDAArray(np.lib.stride_tricks.as_strided(array._ary, shape, strides))
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return DeviceNDArray(shape, strides, array.dtype, gpu_data=array.gpu_data)


class DeviceWorkspace:
    """Scratch buffers on the device (column buffer, packed weights, dW in column order) reused
    between calls, and the plans of the call shapes seen. Ops that run in stream order may share
    one (every op does by default: :data:`DEVICE_WORKSPACE`), since a kernel that overwrites a
    buffer starts only after the previous user's kernels finished. Buffers grow to the largest
    request."""

    def __init__(self, budget: int, min_pixels: int):
        #: column-buffer bytes per chunk, and the fewest output pixels per chunk (ConvPlan reads both)
        self.budget = budget
        self.min_pixels = min_pixels
        # The CPU plan's other choices, off here: its direct and blocked kernels (blocked_wide.py's too), Winograd
        # training paths and kept columns are CPU-only.
        self.direct = False
        self.winograd = False
        self.blocked = False
        self.wide = False
        self.keep_budget = 0
        self._buffers: dict[tuple[str, str], object] = {}
        self._plans: dict[tuple, object] = {}

    @property
    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self._buffers.values())

    def get(self, name: str, size: int, dtype) -> object:
        """A contiguous 1-D device array of ``size`` elements (contents undefined)."""
        key = (name, np.dtype(dtype).char)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[key] = cuda.device_array(max(size, 1), dtype)
        return buffer[:size]

    def plan(self, key: tuple, make):
        """The cached plan for ``key``, made by ``make()`` the first time."""
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = make()
        return plan


#: Column buffers of up to 64 MiB: the GEMM of a chunk then has at least ~10^5 rows for the
#: widest layers of ResNet-50 (K = 4608), far more than enough to fill a GPU, while the whole
#: workspace stays small next to the activations a training step keeps.
DEVICE_WORKSPACE = DeviceWorkspace(budget=64 << 20, min_pixels=4096)
