"""Training-time techniques for small convolutions, each against the im2col + GEMM path it replaces.

    python benchmarks/bench_small_conv.py [--repeat 30] [--only c1,c3,...]

Per layer shape of LeNet-5 and resnet20 (batch 64, float32, cnnlang's thread settings, Numba's and
OpenBLAS's default threads), milliseconds per call, the best of ``--repeat`` calls; the variants
of one row run interleaved (call by call), so load on a shared machine hits them alike:

* forward:  im2col + GEMM | direct kernel (runtime/kernels/cpu/direct.py)
* dW:       im2col + GEMM (what backward did) | GEMM on the forward's kept columns | direct kernel
* dx:       GEMM + col2im | Winograd (dy's conv with the turned weight)
* Winograd F(2x2, 3x3) in training (3x3 shapes only): forward (``keep=True``) and dW (Winograd domain)

"rule" names what runtime/kernels/cpu/workspace.py chooses for the shape. The numbers behind the
rule (2 threads, a shared 2-core Xeon with AVX-512 under heavy load, so best-of-30):
c1 forward 0.75 -> 0.31 ms direct, dW 1.09 -> 0.25 ms direct; c3 forward 0.28 im2col vs 0.68
direct, dW 0.45 (im2col + GEMM) / 0.36 (kept columns) / 0.45 (direct); resnet20 16-channel 3x3
dW 4.8 -> 2.5 ms direct, 32 channels 2.6 (im2col + GEMM) vs 4.8 direct, 64 channels 1.8 vs 4.8.

Winograd's rule (workspace.py), measured with one thread (process CPU time, median of 3-7; the 2-core
EPYC was shared with 3 other jobs, load 2-9, so wall times with 2 threads said little), ms,
im2col -> Winograd: forward r16 19.1 -> 16.9, r32 11.8 -> 8.1, r64 9.1 -> 5.9, c64 138 -> 82,
c128 114 -> 78, c256 84 -> 47; dx (GEMM + col2im -> Winograd) r16 34.4 -> 17.2, r32 17.1 -> 8.7,
r64 10.6 -> 6.1, c64 164 -> 81, c128 132 -> 64, c256 87 -> 51; dW (im2col + GEMM, as after a
Winograd forward, or kept columns -> Winograd) r32 12.3 / 9.4 -> 9.6, r64 9.0 / 7.0 -> 6.6, c64
139 / 134 -> 104, c128 129 / 123 -> 83, c256 81 / 79 -> 50, but r16 (direct 11.3) -> 15.8. At
c512 (4x4 outputs) Winograd's dx (100 vs 83, then 81 vs 79) and dW (89 vs 79) lost, its forward won
(56 vs 79, median of 9): the rule wanted 8x8 outputs for the gradients, 4x4 for the forward. Since the weight
transforms write the register tile's panels directly and dW's final transform reads forward (issue 16; one
thread, best of 5, wall, ms, im2col -> Winograd): c512 forward 54.9 -> 40.4, dx 54.8 -> 40.4, dW 54.9 -> 33.5;
so the rule takes all three from 4x4 outputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlang.environment import tune_threads  # noqa: E402

tune_threads()

import numba  # noqa: E402
import numpy as np  # noqa: E402

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward  # noqa: E402

# name: (N, C, H, O, k, pad) — stride 1
SHAPES = {
    "c1": (64, 1, 32, 6, 5, 0),  # LeNet-5
    "c3": (64, 6, 14, 16, 5, 0),
    "r3": (64, 3, 32, 16, 3, 1),  # resnet20's stem
    "r16": (64, 16, 32, 16, 3, 1),  # resnet20's stages
    "r32": (64, 32, 16, 32, 3, 1),
    "r64": (64, 64, 8, 64, 3, 1),
    "c64": (64, 64, 32, 64, 3, 1),  # ResNet-18 with a CIFAR stem
    "c128": (64, 128, 16, 128, 3, 1),
    "c256": (64, 256, 8, 256, 3, 1),
    "c512": (64, 512, 4, 512, 3, 1),
}


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def row(name, repeat):
    n, c, h, o, k, pad = SHAPES[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, h, c), dtype=np.float32)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32)
    b = rng.standard_normal(o, dtype=np.float32)
    ho = h + 2 * pad - k + 1
    y = np.empty((n, ho, ho, o), np.float32)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dw, dx = np.empty_like(w), np.empty_like(x)
    geometry = ((1, 1), ((pad, pad), (pad, pad)), (1, 1), 1)
    im2col, direct = ConvWorkspace(direct=False, winograd=False), ConvWorkspace(direct=True, winograd=False)
    kept, wino = ConvWorkspace(direct=False, winograd=False), ConvWorkspace(winograd=True)
    im2col.keep_budget = 0
    variants = {
        "fwd im2col": lambda: conv2d_forward(x, w, b, *geometry, y, im2col),
        "fwd direct": lambda: conv2d_forward(x, w, b, *geometry, y, direct),
        "dW im2col": lambda: conv2d_backward(x, w, dy, *geometry, None, dw, b, im2col),
        "dW kept": lambda: conv2d_backward(x, w, dy, *geometry, None, dw, b, kept, kept=True),
        "dW direct": lambda: conv2d_backward(x, w, dy, *geometry, None, dw, b, direct),
        "dx": lambda: conv2d_backward(x, w, dy, *geometry, dx, None, None, im2col),
    }
    if c * o > 64 * 64:  # ResNet-18's: the direct kernels would take seconds
        del variants["fwd direct"], variants["dW direct"]
    if k == 3:
        variants["fwd wino"] = lambda: conv2d_forward(x, w, b, *geometry, y, wino, keep=True)
        variants["dW wino"] = lambda: conv2d_backward(x, w, dy, *geometry, None, dw, b, wino)
        variants["dx wino"] = lambda: conv2d_backward(x, w, dy, *geometry, dx, None, None, wino)
    conv2d_forward(x, w, b, *geometry, y, kept, keep=True)  # the columns "dW kept" reads
    times = {key: [] for key in variants}
    for _ in range(repeat):  # interleaved, call by call
        for key, fn in variants.items():
            times[key].append(best(fn, 1))
    plan = ConvWorkspace().plan(x, w, *geometry, y)
    # (blocked_wide.py's kernels, where the rule takes them, are compared in benchmarks/bench_wide.py)
    fwd = "wide" if plan.wide_forward else "wino" if plan.winograd_forward else "direct" if plan.direct_forward else "im2col"
    dwp = ("wide" if plan.wide_weight else "wino" if plan.winograd_weight else "direct" if plan.direct_weight
           else "im2col" if plan.winograd_forward else "kept")
    dxp = "wide" if plan.wide_dx else "scatter" if plan.wide_dx_scatter else "wino" if plan.winograd_dx else "im2col"
    rule = f"fwd {fwd}, dW {dwp}, dx {dxp}"
    return {key: min(v) for key, v in times.items()}, rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--only", help="comma-separated shape names: " + ",".join(SHAPES))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SHAPES)
    print(f"numba threads {numba.get_num_threads()}; ms per call, best of {args.repeat}")
    keys = ["fwd im2col", "fwd direct", "fwd wino", "dW im2col", "dW kept", "dW direct", "dW wino", "dx", "dx wino"]
    print("shape " + " ".join(f"{k:>10}" for k in keys) + "  rule")
    for name in names:
        result, rule = row(name, args.repeat)
        print(f"{name:<5} " + " ".join(f"{result.get(k, float('nan')):10.3f}" for k in keys) + f"  {rule}", flush=True)


if __name__ == "__main__":
    main()
