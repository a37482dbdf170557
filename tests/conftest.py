"""Suite-wide settings and hooks.

The runtime's thread settings apply to the whole run, as they do to the command line (they must
be set before NumPy and Numba load: cnnlang/environment.py).

With ``CNNLANG_REQUIRE_TORCH=1`` (CI sets it, see .ci/run) a test skipped because torch is
missing fails instead: the PyTorch comparisons are the strongest tests there are, and a skip
must never hide them silently.
"""

from __future__ import annotations

import os

import pytest

from cnnlang.environment import tune_threads

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
