"""Thread settings that keep the CPU runtime fast on small machines. The command line applies them
at its entry (``cnnlang.cli.main``); a script that uses the Python API calls :func:`tune_threads`
before it imports NumPy (or sets the variables itself). A value already in the environment wins.
Importing cnnlang changes nothing.

- ``OPENBLAS_THREAD_TIMEOUT=16``: OpenBLAS's idle threads spin for a long time after each GEMM and
  then compete with the Numba kernels that run between GEMMs; a short timeout measured ResNet-18's
  convolutions at 184 ms instead of 218 ms (batch 8, 2 cores). OpenBLAS reads it when NumPy is
  first imported.
- ``GOMP_SPINCOUNT=1000``: Numba's OpenMP workers busy-wait ~300k spins (GNU default) after every
  parallel region, which on a 2-core machine steals a core from the OpenBLAS GEMM that follows:
  measured 4x slower convs (8x64x56x56 3x3: 56 ms instead of 14 ms) and ~20 ms per tiny call. A
  short spin keeps parallel launches cheap (~2 us). libgomp reads it when it is loaded: at Numba's
  first parallel launch, or when torch is imported (torch loads its libgomp globally and Numba's
  pool then binds to it), whichever comes first.
"""

from __future__ import annotations

import os
import warnings

SETTINGS = {"OPENBLAS_THREAD_TIMEOUT": "16", "GOMP_SPINCOUNT": "1000"}


def tune_threads() -> None:
    """Set each of :data:`SETTINGS` that the environment does not set already."""
    for name, value in SETTINGS.items():
        os.environ.setdefault(name, value)


_warned = False


def warn_if_untuned() -> None:
    """Once per process, a RuntimeWarning when OpenBLAS runs with its default idle-thread spin
    (no OPENBLAS_THREAD_TIMEOUT, more than one OpenBLAS thread): the CPU network that is being
    built would run several times slower (LeNet-5 inference, batch 64, 2 cores: 8.0 ms against
    1.9 ms with the setting, in separate processes). The command line and the tests set it."""
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
