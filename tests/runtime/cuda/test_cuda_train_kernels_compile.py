"""The training kernels (runtime/kernels/cuda/loss.py and optim.py) compile for a real GPU (PTX
for sm_90) in float32 and float64, and a float32 optimiser step computes in float32.

The simulator runs kernels as Python and never type-checks them as Numba's CUDA compiler does.
Compiling needs NVRTC and libNVVM (``pip install 'numba-cuda[cu12]'``), no GPU; the test skips
where they are missing. It runs in a subprocess, since this one runs the simulator.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
from types import SimpleNamespace

from numba import cuda, types as T
from numba.cuda import dispatcher
from cnnlang.runtime.kernels.cuda import loss, optim

dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))  # no GPU here
I, B, F = T.int64, T.boolean, T.float64
labels, sums = T.Array(T.int32, 1, "C"), T.Array(F, 1, "C")
for f in (T.float32, T.float64):
    a1, a2 = T.Array(f, 1, "C"), T.Array(f, 2, "C")
    for kernel, signature in {
        loss.softmax_cross_entropy_rows: (a2, labels, F, F, B, a2, sums, labels, labels),
        loss.sum_rows: (sums, labels, labels, labels, I, sums),
        optim._sgd: (a1, a1, a1, f, f, f, B),
        optim._adam: (a1, a1, a1, a1) + (f,) * 9,
    }.items():
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        except Exception as error:
            if "nvrtc" in str(error).lower() or "nvvm" in str(error).lower():
                print("MISSING", str(error).splitlines()[0])
                sys.exit(0)
            raise
        print(kernel.py_func.__name__, f, "f64" if ".f64" in ptx else "no-f64")
"""


def test_training_kernels_compile_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("MISSING"):
        pytest.skip(f"no CUDA compiler libraries here (pip install 'numba-cuda[cu12]'): {result.stdout.strip()}")
    compiled = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert len(compiled) == 8, result.stdout
    # The update kernels of a float32 network do float32 arithmetic, as the CPU's NumPy does.
    assert compiled["_sgd float32"] == compiled["_adam float32"] == "no-f64"
