"""The CUDA backend (numba.cuda): :class:`backend.CUDABackend`, its ops (``ops/``) and the
device checks (``device.py``). Kernels live in ``runtime/kernels/cuda``. Imported only by
``get_backend("cuda")``: nothing else in cnnlang loads numba.cuda."""

from __future__ import annotations


def create_backend():
    """The CUDA backend, after checking that numba.cuda can run here (DeviceError if not)."""
    from .device import require

    require()
    from .backend import CUDABackend

    return CUDABackend()
