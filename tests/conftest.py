"""Suite-wide settings and hooks.

The runtime's thread settings apply to the whole run, as they do to the command line (they must
be set before NumPy and Numba load: cnnlang/environment.py).

With ``CNNLANG_REQUIRE_TORCH=1`` (CI sets it, see .ci/run) a test skipped because torch is
missing fails instead: the PyTorch comparisons are the strongest tests there are, and a skip
must never hide them silently.

The CUDA tests (tests/runtime/cuda) run under Numba's CUDA simulator unless
``CNNLANG_CUDA_REAL=1`` (benchmarks/gpu_check.sh on a machine with a GPU). The simulator is chosen
here, before anything imports Numba: Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is first
imported, and the CPU tests collected before tests/runtime/cuda import it. It changes numba.cuda
only (the CPU kernels are the same); subprocesses inherit it, so a test that needs the real driver
removes it from the child's environment.
"""

from __future__ import annotations

import os

if os.environ.get("CNNLANG_CUDA_REAL") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import pytest  # noqa: E402 - after the simulator setting

from cnnlang.environment import tune_threads  # noqa: E402

tune_threads()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CNNLANG_REQUIRE_TORCH") == "1":
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "torch" in reason:
            report.outcome = "failed"
            report.longrepr = f"torch is required here (CNNLANG_REQUIRE_TORCH=1) but the test skipped: {reason}"
