"""Whether numba.cuda can run here, checked once when the CUDA backend is first asked for, and
the one-line reason when it cannot (:class:`~cnnlang.runtime.backend.DeviceError`, exit 2):
numba-cuda missing, no GPU or driver, a driver older than the CUDA that numba-cuda was built for,
the CUDA compiler libraries missing, a numpy too new for numba-cuda. Out-of-memory errors are
raised by the backend's allocations (:class:`~cnnlang.runtime.backend.OutOfDeviceMemory`).

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, what the tests use) there is nothing
to check. This module imports numba.cuda only inside :func:`require`.
"""

from __future__ import annotations

import importlib

import numpy as np

from ..backend import DeviceError

INSTALL = "pip install 'cnnlang[cuda]'"


def require() -> None:
    """Return if numba.cuda can compile and run a kernel here; else DeviceError saying why."""
    try:
        cuda = importlib.import_module("numba.cuda")
    except ImportError as error:
        raise DeviceError(f"--device cuda needs numba-cuda, which cannot be imported ({_one_line(error)}): {INSTALL}") from None
    from numba.core import config

    if config.ENABLE_CUDASIM:
        return
    from numba.cuda.cudadrv.driver import driver

    if not cuda.is_available():
        reason = _one_line(driver.initialization_error or "no device")
        if "cannot be found" in reason:
            reason = "no NVIDIA driver is installed"
        raise DeviceError(f"no usable CUDA GPU on this machine ({reason}); run with --device cpu")
    needed = _cuda_built_for()
    version = driver.get_version()
    if needed is not None and version < needed:
        raise DeviceError(
            f"the NVIDIA driver is too old: it runs CUDA {version[0]}.{version[1]}, numba-cuda here is built for "
            f"CUDA {needed[0]}: update the driver, or install numba-cuda for CUDA {version[0]} "
            f"(pip install 'numba-cuda[cu{version[0]}]')"
        )
    _probe(version)


def _probe(version: tuple[int, int]) -> None:
    """Compile and run one small kernel: the toolkit libraries and the driver's PTX support only
    show themselves then."""
    from ..kernels.cuda import memory

    try:
        memory.fill(importlib.import_module("numba.cuda").device_array(1, np.float32), 0)
    except Exception as error:  # noqa: BLE001 - every failure here becomes the one-line reason
        text = _one_line(error)
        if "UNSUPPORTED_PTX_VERSION" in text or "INSUFFICIENT_DRIVER" in text:
            raise DeviceError(
                f"the NVIDIA driver is too old for numba-cuda's compiler (driver runs CUDA {version[0]}.{version[1]}; "
                f"{text}): update the driver"
            ) from None
        if "row_stack" in text:  # numba-cuda <= 0.30.4 registers np.row_stack, gone in numpy 2.5
            raise DeviceError(
                f"numba-cuda cannot compile with numpy {np.__version__} ({text}): pip install 'numpy<2.5'"
            ) from None
        if any(name in text.lower() for name in ("nvrtc", "nvvm", "libdevice", "dynamiclibnotfound")):
            raise DeviceError(f"numba-cuda cannot find the CUDA compiler libraries ({text}): {INSTALL}") from None
        raise DeviceError(f"numba.cuda cannot run a kernel on this GPU: {text}") from None


def _cuda_built_for() -> tuple[int, int] | None:
    """(major, 0) of the CUDA that the installed cuda-bindings target: the oldest driver they run on."""
    try:
        from cuda.bindings import __version__
    except ImportError:
        return None
    return int(__version__.split(".")[0]), 0


def is_out_of_memory(error: BaseException) -> bool:
    """Whether a driver (or CuPy) error is an allocation that did not fit."""
    text = f"{getattr(error, 'code', '')} {error}".lower().replace(" ", "_")
    return "out_of_memory" in text


def _one_line(error: object) -> str:
    return " ".join(str(error).split()).rstrip(":").strip() or type(error).__name__
