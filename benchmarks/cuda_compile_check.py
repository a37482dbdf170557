"""Compile every CUDA kernel of the conv and dense ops to PTX for a real GPU, without one.

The simulator runs kernels as Python, so it cannot catch what only the CUDA compiler refuses
(types it cannot unify, unsupported calls). This script types and compiles each kernel with the
argument types a launch gives it (contiguous and strided arrays, float32 and float64), for
compute capability 9.0. It needs NVVM and NVRTC, which come as wheels without a GPU:

    pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvrtc-cu12
    python benchmarks/cuda_compile_check.py

It prints one line per kernel and exits 1 if any fails (2 if the compiler libraries are missing).
tests/runtime/cuda/test_cuda_conv_kernels_compile.py runs it in a subprocess (the test session
itself runs the simulator) and skips where the libraries are missing.
"""

from __future__ import annotations

import os
import sys
import traceback

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("cuda_compile_check: unset NUMBA_ENABLE_CUDASIM (the simulator compiles nothing)")

from types import SimpleNamespace  # noqa: E402

from numba import cuda, types  # noqa: E402
from numba.cuda import dispatcher  # noqa: E402

from cnnlang.runtime.kernels.cuda import direct, epilogue, gemm, im2col, layout, reduce  # noqa: E402

CC = (9, 0)
# Device functions called from a kernel are compiled for the current device's compute
# capability; with no device, say which.
dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=CC)


def arr(dtype, ndim, layout_="A"):
    return types.Array(dtype, ndim, layout_)


def checks():
    i64, flag = types.int64, types.boolean
    geo = types.UniTuple(i64, 15)
    for name, dt in (("f", types.float32), ("d", types.float64)):
        for layout_ in ("C", "A"):
            a2, a1, a4 = arr(dt, 2, layout_), arr(dt, 1, layout_), arr(dt, 4, layout_)
            for source in ("rows", "columns", "image"):
                for trans_b in (False, True):
                    a = a4 if source == "image" else a2
                    g = types.UniTuple(i64, 16 if source == "image" else 1)
                    kernel = gemm._tiled_kernel(name, source, trans_b, *gemm.TILE)
                    yield f"gemm {name} {layout_} {source} trans_b={trans_b}", kernel, (a, g, a2, a2, i64, i64, i64, flag, a1, flag, i64)
            if layout_ == "C":
                continue  # the other kernels type the same for either layout
            yield f"epilogue {name} {layout_}", epilogue.epilogue_kernel(name), (a2, a2, flag, a1, flag, i64)
            yield f"col2im {name} {layout_}", im2col.col2im(name), (a2, a4, geo, i64, i64)
            yield f"im2col {name} {layout_}", im2col.im2col, (a4, a2, geo, i64, i64)
            yield f"pack_weight {name} {layout_}", im2col.pack_weight, (a4, a2)
            yield f"unpack_weight {name} {layout_}", im2col.unpack_weight, (a2, a4)
            yield f"direct forward {name} {layout_}", direct.forward_kernel(name), (a4, a4, a4, a1, flag, i64, geo)
            yield f"direct dx {name} {layout_}", direct.input_grad_kernel(name), (a4, a4, a4, geo)
            yield f"direct dW {name} {layout_}", direct.weight_grad_kernel(name, 128), (a4, a4, a4, geo)
            yield f"column sums {name} {layout_}", reduce._band_kernel(name), (a2, a2, i64)
            yield f"to channels-first {name} {layout_}", layout._to_channels_first, (arr(dt, 3, layout_), a2)
            yield f"to channels-last {name} {layout_}", layout._to_channels_last, (a2, arr(dt, 3, layout_))


def main() -> int:
    failed = 0
    for label, kernel, signature in checks():
        try:
            cuda.compile_ptx(kernel.py_func, signature, cc=CC)
            print(f"ok    {label}")
        except Exception as error:
            if any(name in str(error).lower() for name in ("nvrtc", "nvvm")):
                print(f"missing the CUDA compiler libraries: {str(error).splitlines()[0]}")
                return 2
            failed += 1
            print(f"FAIL  {label}\n{traceback.format_exc(limit=2)}")
    print(f"{failed} failed" if failed else "every kernel compiles")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
