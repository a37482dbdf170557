"""Thread settings (cnnlang/environment.py) are applied at the command line's entry, not as a side
effect of ``import cnnlang``; a value the user set wins; building a CPU network without them warns."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnnlang.environment import SETTINGS

PROBE = """
import os, sys
before = {name: os.environ.get(name) for name in NAMES}
import cnnlang, cnnlang.runtime.network
after_import = {name: os.environ.get(name) for name in NAMES}
from cnnlang.cli import main
main(["zoo"])
print(repr((before, after_import, {name: os.environ.get(name) for name in NAMES})), file=sys.stderr)
"""


def probe(env: dict[str, str]) -> tuple[dict, dict, dict]:
    code = f"NAMES = {list(SETTINGS)!r}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return eval(done.stderr.strip().splitlines()[-1])  # noqa: S307 - our own repr


def test_import_sets_nothing_and_the_cli_sets_them():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    before, after_import, after_main = probe(env)
    assert before == after_import == {name: None for name in SETTINGS}
    assert after_main == SETTINGS


def test_a_users_setting_wins():
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "OPENBLAS_THREAD_TIMEOUT": "5"}
    _, _, after_main = probe(env)
    assert after_main == {**SETTINGS, "OPENBLAS_THREAD_TIMEOUT": "5"}


WARN_PROBE = """
import warnings
import cnnlang

warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    cnnlang.load("network n { input 1x4x4\\n fc(2) }").build(seed=0)
    cnnlang.load("network n { input 1x4x4\\n fc(3) }").build(seed=0)
print(len([w for w in caught if "tune_threads" in str(w.message)]))
"""


def warnings_from_building(env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-c", WARN_PROBE], capture_output=True, text=True, env=env, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def test_building_a_cpu_network_without_the_openblas_setting_warns_once_and_names_the_fix():
    thread_counts = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    untuned = {k: v for k, v in os.environ.items() if k not in SETTINGS and k not in thread_counts}
    blas_pool = {**untuned, "CNNLANG_POOL_GEMM": "0"}  # GEMMs on OpenBLAS's own threads
    assert warnings_from_building(blas_pool) == 1
    assert warnings_from_building({**blas_pool, "OPENBLAS_THREAD_TIMEOUT": "16"}) == 0
    assert warnings_from_building({**blas_pool, "OPENBLAS_NUM_THREADS": "1"}) == 0  # no idle threads to spin


def test_no_warning_where_the_gemms_run_in_numbas_pool():
    from cnnlang.runtime.kernels.cpu import pool_gemm

    if not pool_gemm.available():
        pytest.skip("NumPy's BLAS is not the OpenBLAS pool_gemm.py calls")
    thread_counts = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "CNNLANG_POOL_GEMM")
    untuned = {k: v for k, v in os.environ.items() if k not in SETTINGS and k not in thread_counts}
    assert warnings_from_building(untuned) == 0
