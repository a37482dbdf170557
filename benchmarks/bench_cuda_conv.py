"""GPU GEMM and convolution: each implementation against the others and against PyTorch, float32.

    python benchmarks/bench_cuda_conv.py [RESULTS_DIR]       # on a machine with a GPU (~1-2 min)
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_cuda_conv.py --tiny   # smoke run, no GPU

Rows:
* GEMM: the tiled numba kernel (default tile, and 128x128 with 8x8 per thread), cuBLAS through
  CuPy, torch.matmul with TF32 off; the shapes of ResNet-50 layers' GEMMs at batch 32 and a
  square one.
* conv forward and backward (ResNet-50 layers at batch 32, and a depthwise 3x3): every method of
  runtime/kernels/cuda/conv.py (im2col, implicit, direct where it applies) with each GEMM, against
  torch.nn.functional.conv2d (channels-last, cuDNN, TF32 off).

Times are medians of several runs after a warm-up, with the device synchronised; TFLOP/s counts
2 * MACs. Prints a table and, given RESULTS_DIR, writes it there as bench_cuda_conv.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import cuda

from cnnlang.runtime.kernels.cuda import gemm as gemm_module
from cnnlang.runtime.kernels.cuda.conv import conv_backward, conv_forward, pack
from cnnlang.runtime.kernels.cpu.workspace import output_size

TINY = "--tiny" in sys.argv
REPEATS = 2 if TINY else 10
# (name, M, N, K): conv GEMMs of ResNet-50 at batch 32 (pixels x filters x taps*channels)
GEMMS = [("square 4096", 4096, 4096, 4096), ("res2 3x3 64", 100352, 64, 576), ("res3 1x1 512->128", 25088, 128, 512),
         ("res5 3x3 512", 1568, 512, 4608)]  # fmt: skip
# (name, N, H, W, C, O, kernel, stride, pad, groups)
CONVS = [("conv1 7x7/2", 32, 224, 224, 3, 64, 7, 2, 3, 1), ("res2 3x3 64", 32, 56, 56, 64, 64, 3, 1, 1, 1),
         ("res2 1x1 256->64", 32, 56, 56, 256, 64, 1, 1, 0, 1), ("res3 3x3/2 128", 32, 56, 56, 128, 128, 3, 2, 1, 1),
         ("res5 3x3 512", 32, 7, 7, 512, 512, 3, 1, 1, 1), ("depthwise 3x3 128", 32, 56, 56, 128, 128, 3, 1, 1, 128)]  # fmt: skip
if TINY:
    GEMMS = [("tiny", 9, 7, 5)]
    CONVS = [("tiny 3x3", 1, 5, 4, 2, 3, 3, 1, 1, 1), ("tiny depthwise", 1, 4, 4, 2, 2, 3, 1, 1, 2)]


def timed(run) -> float:
    """Median seconds of ``run()`` over REPEATS, after one warm-up (compiles)."""
    run()
    cuda.synchronize()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_module():
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def policies() -> list[str]:
    names = ["numba"]
    if gemm_module._cupy() is not None and not TINY:
        names.append("cublas")
    return names


def bench_gemms(torch, rows):
    rng = np.random.default_rng(0)
    for name, m, n, k in GEMMS:
        a = cuda.to_device(rng.standard_normal((m, k), dtype=np.float32))
        b = cuda.to_device(rng.standard_normal((n, k), dtype=np.float32))
        out = cuda.device_array((m, n), np.float32)
        flops = 2.0 * m * n * k
        variants = [("numba tile 64x64/4x4", "numba", None), ("numba tile 128x128/8x8", "numba", (128, 128, 8, 8, 8))]
        if "cublas" in policies():
            variants.append(("cuBLAS (CuPy)", "cublas", None))
        for label, policy, tile in variants:
            gemm_module.set_gemm_policy(policy)
            seconds = timed(lambda: gemm_module.gemm(a, b, out=out, trans_b=True, tile=tile))
            rows.append(dict(kind="gemm", case=name, impl=label, ms=seconds * 1e3, tflops=flops / seconds / 1e12))
        if torch is not None:
            ta, tb = torch.randn(m, k, device="cuda"), torch.randn(n, k, device="cuda")
            seconds = timed(lambda: torch.matmul(ta, tb.T))
            rows.append(dict(kind="gemm", case=name, impl="torch (TF32 off)", ms=seconds * 1e3, tflops=flops / seconds / 1e12))


def bench_convs(torch, rows):
    rng = np.random.default_rng(1)
    for name, n, h, w, c, o, k, s, p, g in CONVS:
        ho, wo = output_size(h, k, s, (p, p), 1), output_size(w, k, s, (p, p), 1)
        x = cuda.to_device(rng.standard_normal((n, h, w, c), dtype=np.float32))
        weight = cuda.to_device(rng.standard_normal((o, c // g, k, k), dtype=np.float32))
        bias = cuda.to_device(np.zeros(o, np.float32))
        y = cuda.device_array((n, ho, wo, o), np.float32)
        dy = cuda.to_device(rng.standard_normal((n, ho, wo, o), dtype=np.float32))
        dx, dweight = cuda.device_array_like(x), cuda.device_array_like(weight)
        flops = 2.0 * n * ho * wo * o * (c // g) * k * k
        geometry = ((s, s), ((p, p), (p, p)), (1, 1), g)
        methods = ["direct"] if g > 1 and c // g < 16 else ["im2col", "implicit", "direct"]
        for method in methods:
            for policy in policies() if method == "im2col" else ["numba"]:
                gemm_module.set_gemm_policy(policy)
                packed = pack(weight, out=cuda.device_array((o, weight[0].size), np.float32)) if method != "direct" and k > 1 else None
                label = f"{method} + {policy}" if method == "im2col" else method
                forward = timed(lambda: conv_forward(x, weight, bias, *geometry, y, 1, method, packed=packed))
                backward = timed(lambda: conv_backward(x, weight, dy, *geometry, dx, dweight, bias, method))
                rows.append(dict(kind="conv", case=name, impl=label, ms=forward * 1e3, tflops=flops / forward / 1e12,
                                 backward_ms=backward * 1e3, backward_tflops=2 * flops / backward / 1e12))  # fmt: skip
        if torch is not None:
            tx = torch.randn(n, c, h, w, device="cuda").to(memory_format=torch.channels_last).requires_grad_(True)
            tw = torch.randn(o, c // g, k, k, device="cuda").to(memory_format=torch.channels_last).requires_grad_(True)
            tb = torch.zeros(o, device="cuda", requires_grad=True)
            tdy = torch.randn(n, o, ho, wo, device="cuda").to(memory_format=torch.channels_last)
            conv = torch.nn.functional.conv2d
            forward = timed(lambda: conv(tx, tw, tb, s, p, 1, g).relu_())
            ty = conv(tx, tw, tb, s, p, 1, g)
            backward = timed(lambda: torch.autograd.grad(ty, (tx, tw, tb), tdy, retain_graph=True))
            rows.append(dict(kind="conv", case=name, impl="torch cuDNN (TF32 off)", ms=forward * 1e3, tflops=flops / forward / 1e12,
                             backward_ms=backward * 1e3, backward_tflops=2 * flops / backward / 1e12))  # fmt: skip


def main() -> int:
    torch = None if TINY else torch_module()
    rows: list[dict] = []
    bench_gemms(torch, rows)
    bench_convs(torch, rows)
    gemm_module.set_gemm_policy("auto")
    print(f"{'case':<22} {'implementation':<26} {'fwd ms':>9} {'TFLOP/s':>8} {'bwd ms':>9} {'TFLOP/s':>8}")
    for row in rows:
        backward = f"{row['backward_ms']:9.3f} {row['backward_tflops']:8.2f}" if "backward_ms" in row else ""
        print(f"{row['case']:<22} {row['impl']:<26} {row['ms']:9.3f} {row['tflops']:8.2f} {backward}")
    folders = [a for a in sys.argv[1:] if not a.startswith("--")]
    if folders:
        Path(folders[0]).mkdir(parents=True, exist_ok=True)
        (Path(folders[0]) / "bench_cuda_conv.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
