"""The seam between the runtime and a device: where arrays live and who computes on them.

Plans, ops, the network and the optimisers allocate and compute through a :class:`Backend`
instead of calling NumPy directly, so a second device (numba.cuda, later) is one more backend
plus its kernels under ``runtime/kernels/<name>/``, not a rewrite of every op.

The network's parameters have a host master copy (NumPy arrays: what ``save``, ``load`` and
``set_param`` see); :meth:`Backend.to_device` gives the array the ops use. On the CPU that is
the host array itself, so nothing is ever copied; a device backend returns its own copy, which
``Network.refresh`` uploads again (:meth:`Backend.upload`) after the host copy changed.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

Shape = tuple[int, ...]


class Backend:
    """What a device offers the runtime. Subclasses set ``name`` and ``xp`` (the NumPy-compatible
    array module: numpy on the CPU, cupy-like on a GPU) and override what differs."""

    name: str = ""
    xp: ModuleType = np
    #: True when device arrays are host arrays (no copies, no uploads).
    shares_host_memory: bool = False

    # -- allocation
    def empty(self, shape: Shape, dtype: Any) -> Any:
        return self.xp.empty(shape, dtype)

    def zeros(self, shape: Shape, dtype: Any) -> Any:
        return self.xp.zeros(shape, dtype)

    def ones(self, shape: Shape, dtype: Any) -> Any:
        return self.xp.ones(shape, dtype)

    # -- host <-> device
    def to_device(self, host: np.ndarray) -> Any:
        """A device array holding ``host``'s values (the array itself where memory is shared)."""
        raise NotImplementedError

    def to_host(self, array: Any) -> np.ndarray:
        """A NumPy array with ``array``'s values (the array itself where memory is shared)."""
        raise NotImplementedError

    def upload(self, host: np.ndarray, device: Any) -> None:
        """Copy ``host`` into the existing device array ``device`` (nothing to do if shared)."""
        raise NotImplementedError

    # -- computing
    def rng(self, seed: Any) -> Any:
        """A seeded random generator with NumPy's ``Generator`` interface (``random(out=...)``)."""
        raise NotImplementedError

    def matmul(self, a: Any, b: Any, out: Any = None) -> Any:
        """a @ b (into ``out`` when given): the GEMM every conv and fc ends in."""
        return self.xp.matmul(a, b, out=out)

    def __repr__(self) -> str:
        return f"<{self.name} backend>"


class CPUBackend(Backend):
    """NumPy arrays in host memory; kernels in runtime/kernels/cpu (Numba), GEMM by NumPy's BLAS."""

    name = "cpu"
    xp = np
    shares_host_memory = True

    def to_device(self, host: np.ndarray) -> np.ndarray:
        return host

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return array

    def upload(self, host: np.ndarray, device: np.ndarray) -> None:
        if device is not host:
            np.copyto(device, host)

    def rng(self, seed: Any) -> np.random.Generator:
        return np.random.default_rng(seed)


CPU = CPUBackend()
BACKENDS: dict[str, Backend] = {CPU.name: CPU}


def get_backend(backend: str | Backend | None = None) -> Backend:
    """The backend named ``backend`` (default: the CPU); a Backend is returned as it is."""
    if backend is None:
        return CPU
    if isinstance(backend, Backend):
        return backend
    try:
        return BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}") from None
