"""Thread settings that keep the CPU runtime fast on small machines. The command line applies them
at its entry (``cnnlang.cli.main``); a script that uses the Python API calls :func:`tune_threads`
before it imports NumPy (or sets the variables itself). A value already in the environment wins.
Importing cnnlang changes nothing.

- ``OPENBLAS_THREAD_TIMEOUT=16``: OpenBLAS's idle threads spin for a long time after each GEMM and
  then compete with the Numba kernels that run between GEMMs; a short timeout measured ResNet-18's
  convolutions at 184 ms instead of 218 ms (batch 8, 2 cores). OpenBLAS reads it when NumPy is
  first imported. It matters where the GEMMs go to OpenBLAS's own threads: where
  runtime/kernels/cpu/pool_gemm.py cannot run them on Numba's.
- Numba's OpenMP workers keep libgomp's default busy-wait after each parallel region (GOMP_SPINCOUNT
  300000, about 3 ms): a LeNet-5 training step is dozens of short kernels, and a worker that has
  gone to sleep between two of them costs a wake-up each (batch 64, 2 cores, two alternating runs:
  3.93 and 5.54 ms a step with a spin of 1000, 3.22 and 4.43 ms with the default and the GEMMs in
  Numba's pool). cnnlang set 1000 while its GEMMs ran on OpenBLAS's own threads, before
  runtime/kernels/cpu/pool_gemm.py: a spinning worker held a core that they needed (8x64x56x56 3x3
  convs: 56 ms instead of 14 ms).
"""

from __future__ import annotations

import os
import warnings

SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "16"}


def tune_threads() -> None:
    """Set each of :data:`SETTINGS` that the environment does not set already."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)


_warned = False


def warn_if_untuned() -> None:
    """Once per process, a RuntimeWarning when OpenBLAS runs with its default idle-thread spin
    (no OPENBLAS_THREAD_TIMEOUT, more than one OpenBLAS thread): the CPU network that is being
    built would run several times slower where its GEMMs go to OpenBLAS's own threads (LeNet-5
    inference, batch 64, 2 cores: 8.0 ms against 1.9 ms with the setting, in separate processes).
    The network calls it only then: where NumPy's BLAS is not the OpenBLAS that
    runtime/kernels/cpu/pool_gemm.py calls from Numba's threads (without the setting there, 1.2-1.7
    ms against 1.3). The command line and the tests set it."""
    global _warned
    threads = os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if _warned or "OPENBLAS_THREAD_TIMEOUT" in os.environ or threads == "1":
        return
    _warned = True
    variables = " ".join(f"{name}={value}" for name, value in SETTINGS.items())
    warnings.warn(
        "cnnlang: OpenBLAS's idle threads spin after each GEMM and slow cnnlang's CPU kernels down "
        "several times (LeNet-5 inference measured 4x). Call cnnlang.environment.tune_threads() before "
        f"anything imports NumPy, or run Python with {variables}.", RuntimeWarning, stacklevel=4)
