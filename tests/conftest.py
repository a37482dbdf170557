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

Under pytest-xdist (``-n auto``, the README's command) each worker runs kernels on threads of its
own: on a machine with more cores than workers, each worker's Numba and BLAS threads are capped at
its share of the cores, never below 2, so the parallel kernels still split their work (on the
2-core CI machine: 2 workers of 2 threads, the defaults, and a short OpenMP spin, below). Workers
share Numba's cache directory; its files are written under a temporary name and renamed, so two
workers compiling the same kernel cost time, never correctness.
"""

from __future__ import annotations

import os

if os.environ.get("CNNLANG_CUDA_REAL") != "1":
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# An xdist worker's environment says COLUMNS=80 and LINES=24 (a plain run's has neither): the
# commands' tables would then be cut at 80 columns instead of their 160 for pipes
# (cnnlang/cli/common.py's table_console), and the README transcript tests would fail.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)

_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_share = max(2, _cores // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
if _share < _cores:  # read when Numba and NumPy load, which is after this
    for _name in ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(_name, str(_share))
# Workers that together run more threads than there are cores: a Numba worker thread that
# busy-waits after each kernel (libgomp's default, which the runtime keeps: cnnlang/environment.py)
# would hold a core another test process needs.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) * _share > _cores:
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")

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
