"""CUDA tests: skipped with a reason where numba-cuda is not installed (an error instead with
``CNNLANG_REQUIRE_NUMBA_CUDA=1``, which CI sets: a skip must not hide them there). They run under
Numba's CUDA simulator (set for the whole suite in tests/conftest.py, before Numba loads) unless
``CNNLANG_CUDA_REAL=1``; the simulator runs every thread as Python, so keep shapes tiny."""

from __future__ import annotations

import os

import pytest

if os.environ.get("CNNLANG_REQUIRE_NUMBA_CUDA") == "1":
    import numba.cuda  # noqa: F401 - fails the run where it is missing
else:
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed (pip install -e '.[test]')")

SIMULATED = os.environ.get("CNNLANG_CUDA_REAL") != "1"


@pytest.fixture(scope="session")
def cuda_backend():
    """The CUDA backend (simulated unless CNNLANG_CUDA_REAL=1)."""
    from numba.core import config

    from cnnlang.runtime.backend import get_backend

    assert bool(config.ENABLE_CUDASIM) == SIMULATED, "Numba loaded before tests/conftest.py chose the simulator"
    return get_backend("cuda")
