"""The op kernels of runtime/kernels/cuda (pool, norm, activation, merge) compile for a real
GPU (PTX for sm_90), in float32 and float64.

The simulator runs kernels as Python, so it never type-checks them as Numba's CUDA compiler does
(a uint64 mixed with an int64 becomes a float64 there, a missing overload only fails on a GPU).
Compiling to PTX needs NVRTC and libNVVM (``pip install 'numba-cuda[cu12]'``) but no GPU; the
test skips where they are missing. It runs in a subprocess: this one runs the simulator.
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
from cnnlang.runtime.kernels.cuda import activation, merge, norm, pool

# Device functions that are not inlined compile for the current device's compute capability:
# with no GPU, the one the kernels compile for.
dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=(9, 0))

I, B, F, U = T.int64, T.boolean, T.float64, T.uint64
d3, i4 = T.Array(F, 3, "C"), T.Array(T.int32, 4, "C")
compiled = 0
for char, f in (("f", T.float32), ("d", T.float64)):
    a1, a2, a4 = (T.Array(f, n, "C") for n in (1, 2, 4))
    rows = T.Array(f, 2, "A")  # a channel slice
    forward, backward = activation._activation_kernels(char)
    signatures = {
        forward: (a1, a1, I),
        backward: (a1, a1, a1, I),
        activation._prelu_forward: (a1, a1, a1),
        activation._prelu_input_grad: (a1, a1, a1, a1),
        activation._prelu_slope_terms: (a1, a1, a1),
        activation._softmax_forward: (a2, a2),
        activation._softmax_backward: (a2, a2, a2),
        pool._maxpool_forward: (a4, a4, i4) + (I,) * 8,
        pool._maxpool_backward: (a4, i4, a4) + (I,) * 8,
        pool._avgpool_forward: (a4, a4) + (I,) * 6 + (B,),
        pool._avgpool_backward: (a4, a4) + (I,) * 6 + (B,),
        norm._batch_partials: (a2, d3, I),
        norm._batch_statistics: (d3, I, I, F, F, a1, a1, a1, a1),
        norm._running_statistics: (a1, a1, F, a1, a1),
        norm._batchnorm_apply: (a1, a1, a1, a1, a1, a1),
        norm._gradient_partials: (a2, a2, a1, a1, d3, I),
        norm._parameter_grads: (d3, a1, a1),
        norm._batchnorm_input_grad: (a1, a1, a1, a1, a1, a1, a1, I, B, a1),
        norm._lrn_forward: (a2, a2, a2, I, F, F, F),
        norm._lrn_backward: (a2, a2, a2, a2, I, F, F),
        norm._dropout_apply: (a1, U, U, F, F, a1),
        merge._add_kernel(char): (rows, rows, rows, I),
    }
    for kernel, signature in signatures.items():
        try:
            cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        except Exception as error:
            if "nvrtc" in str(error).lower() or "nvvm" in str(error).lower():
                print("MISSING", str(error).splitlines()[0])
                sys.exit(0)
            raise
        compiled += 1
print("COMPILED", compiled)
"""


def test_op_kernels_compile_to_ptx():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    if result.stdout.startswith("MISSING"):
        pytest.skip(f"no CUDA compiler libraries here (pip install 'numba-cuda[cu12]'): {result.stdout.strip()}")
    assert result.stdout.split() == ["COMPILED", "44"]
