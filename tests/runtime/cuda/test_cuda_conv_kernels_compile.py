"""The conv and dense kernels (GEMM, im2col, col2im, direct, column sums, layout, epilogue)
compile for a real GPU: benchmarks/cuda_compile_check.py compiles each to PTX for sm_90 with the
argument types a launch gives it. The simulator never type-checks kernels as Numba's CUDA
compiler does; this needs NVRTC and libNVVM (``pip install 'numba-cuda[cu12]'``) but no GPU,
and skips where they are missing. A subprocess, since this one runs the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[3] / "benchmarks" / "cuda_compile_check.py"


def test_conv_and_dense_kernels_compile_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900)
    if result.returncode == 2:
        pytest.skip(f"no CUDA compiler libraries here (pip install 'numba-cuda[cu12]'): {result.stdout.strip()}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert result.stdout.splitlines()[-1] == "every kernel compiles"
