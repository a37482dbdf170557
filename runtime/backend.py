"""The seam between the runtime and a device: where arrays live and who computes on them.

Plans, ops, the network and the optimisers allocate and compute through a :class:`Backend`
instead of calling NumPy directly, so a second device (numba.cuda: ``runtime/cuda``) is one more
backend plus its kernels under ``runtime/kernels/<name>/``, not a rewrite of every op. Code that
runs on any backend uses only the methods here (``fill``, ``copy``, ``add_into``, ...), never
NumPy's operators on the arrays: a device array has no ``+=``.

The network's parameters have a host master copy (NumPy arrays: what ``save``, ``load`` and
``set_param`` see); :meth:`Backend.to_device` gives the array the ops use. On the CPU that is
the host array itself, so nothing is ever copied; a device backend returns its own copy, which
``Network.refresh`` uploads again (:meth:`Backend.upload`) after the host copy changed. While
training on such a device the device copy is the authoritative one (the optimisers step it);
``Network.pull`` copies it back to the host copies, and saving, ``state`` and checkpoints do so.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from cnnlang.errors import UsageError

from .host_arrays import host_empty

Shape = tuple[int, ...]


class DeviceError(UsageError):
    """A device that cannot be used (no GPU, driver too old, package missing): one line, exit 2."""


class OutOfDeviceMemory(DeviceError):
    """An allocation the device could not satisfy. The plan names the layer that asked; the
    network completes the sentence with the batch size that should fit (:meth:`explain`)."""

    def __init__(self, nbytes: int, layer: str | None = None):
        self.nbytes, self.layer = nbytes, layer
        self.detail = ""
        super().__init__()

    def at(self, layer: str) -> "OutOfDeviceMemory":
        """This error, naming ``layer`` unless a deeper frame named one already."""
        if self.layer is None:
            self.layer = layer
        return self

    def explain(self, batch: int, fits: int | None, free: int | None) -> "OutOfDeviceMemory":
        """Add the batch that failed and an estimate of one that fits (``fits``; None: unknown)."""
        parts = [f"batch {batch} does not fit"]
        if free is not None:
            parts.append(f"{_size(free)} free")
        if fits is not None:
            parts.append(f"batch {fits} should" if fits > 0 else "not even batch 1 fits")
        self.detail = "; ".join(parts)
        return self

    def __str__(self) -> str:
        where = f" in layer '{self.layer}'" if self.layer else ""
        return f"out of GPU memory{where}: {_size(self.nbytes)} asked for" + (f" ({self.detail})" if self.detail else "")


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= scale:
            return f"{nbytes / scale:,.1f} {unit}"
    return f"{nbytes / 1024:,.1f} KiB"


class Backend:
    """What a device offers the runtime. Subclasses set ``name`` and ``xp`` (the NumPy-compatible
    array module: numpy on the CPU; None on CUDA, whose arrays only the methods below touch) and
    override what differs."""

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

    # -- memory
    def fill(self, array: Any, value: float) -> None:
        """Every element of ``array`` (any strides) set to ``value``."""
        raise NotImplementedError

    def copy(self, dst: Any, src: Any) -> None:
        """``dst[...] = src`` (same shape; ``dst`` may be strided: a channel slice)."""
        raise NotImplementedError

    def add_into(self, dst: Any, src: Any) -> None:
        """``dst += src`` (same shape)."""
        raise NotImplementedError

    def add(self, dst: Any, a: Any, b: Any) -> None:
        """``dst = a + b`` (same shape; ``dst`` is neither): here a copy, then :meth:`add_into`;
        a backend may do it in one pass."""
        self.copy(dst, a)
        self.add_into(dst, b)

    def is_contiguous(self, array: Any) -> bool:
        """Whether ``array`` is C-contiguous (a channel slice is not)."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait until the device has finished the work queued so far (timings need it)."""

    def memory_info(self) -> tuple[int, int] | None:
        """(free, total) bytes of device memory; None where the backend uses host memory."""
        return None

    # -- computing
    def rng(self, seed: Any) -> Any:
        """A seeded random source for the backend's dropout: NumPy's ``Generator`` on the CPU;
        on a device an object whose ``next_key()`` gives a 64-bit key for counter-based kernels."""
        raise NotImplementedError

    def matmul(self, a: Any, b: Any, out: Any = None, trans_a: bool = False, trans_b: bool = False) -> Any:
        """op(a) @ op(b), op a transpose where asked (into ``out`` when given): the GEMM every
        conv and fc ends in."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.name} backend>"


class CPUBackend(Backend):
    """NumPy arrays in host memory; kernels in runtime/kernels/cpu (Numba), GEMM by NumPy's BLAS."""

    name = "cpu"
    xp = np
    shares_host_memory = True

    def empty(self, shape: Shape, dtype: Any) -> np.ndarray:
        return host_empty(shape, dtype)

    def zeros(self, shape: Shape, dtype: Any) -> np.ndarray:
        array = host_empty(shape, dtype)
        array.fill(0)
        return array

    def to_device(self, host: np.ndarray) -> np.ndarray:
        return host

    def to_host(self, array: np.ndarray) -> np.ndarray:
        return array

    def upload(self, host: np.ndarray, device: np.ndarray) -> None:
        if device is not host:
            np.copyto(device, host)

    def fill(self, array: np.ndarray, value: float) -> None:
        array.fill(value)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.copyto(dst, src)

    def add_into(self, dst: np.ndarray, src: np.ndarray) -> None:
        np.add(dst, src, out=dst)

    def add(self, dst: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        if dst.flags.c_contiguous and a.flags.c_contiguous and b.flags.c_contiguous and a.dtype == b.dtype == dst.dtype:
            from .kernels.cpu.merge import add2  # (kernels import Numba: not at backend import)

            add2(a.reshape(-1), b.reshape(-1), dst.reshape(-1), False)  # one parallel pass
        else:
            np.add(a, b, out=dst)

    def is_contiguous(self, array: np.ndarray) -> bool:
        return bool(array.flags.c_contiguous)

    def rng(self, seed: Any) -> np.random.Generator:
        return np.random.default_rng(seed)

    def matmul(
        self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None, trans_a: bool = False, trans_b: bool = False
    ) -> np.ndarray:
        from .kernels.cpu.pool_gemm import matmul  # (kernels import Numba: not at backend import)

        a, b = a.T if trans_a else a, b.T if trans_b else b
        if out is None:
            out = np.empty(np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1]),
                           np.result_type(a, b))
        return matmul(a, b, out)


CPU = CPUBackend()
BACKENDS: dict[str, Backend] = {CPU.name: CPU}
#: backends created on first use, by "module:factory" (the device backends depend on this module,
#: never the other way round; importing them loads their driver libraries)
LOADED_ON_DEMAND = {"cuda": "cnnlang.runtime.cuda:create_backend"}


def get_backend(backend: str | Backend | None = None) -> Backend:
    """The backend named ``backend`` (default: the CPU); a Backend is returned as it is. "cuda"
    imports numba.cuda on first use, never before."""
    if backend is None:
        return CPU
    if isinstance(backend, Backend):
        return backend
    if backend not in BACKENDS and backend in LOADED_ON_DEMAND:
        module, name = LOADED_ON_DEMAND[backend].split(":")
        BACKENDS[backend] = getattr(importlib.import_module(module), name)()
    try:
        return BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join([*BACKENDS, *LOADED_ON_DEMAND])}") from None


DEVICES = ("cpu", "cuda", "auto")


def device_backend(device: str) -> Backend:
    """The backend for a ``--device``: "cpu", "cuda" (DeviceError, one line, if it cannot run
    here) or "auto" (the GPU when it can, else the CPU)."""
    if device == "auto":
        try:
            return get_backend("cuda")
        except DeviceError:
            return CPU
    if device not in DEVICES:
        raise UsageError(f"unknown device '{device}'; choose one of {', '.join(DEVICES)}")
    return get_backend(device)
