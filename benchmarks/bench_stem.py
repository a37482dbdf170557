"""The inference stem kernel (runtime/kernels/cpu/stem.py) against the im2col + GEMM path it
replaces, in a zoo model's optimised inference plan, same process, alternating.

    python benchmarks/bench_stem.py [--model resnet50] [--batch 8] [--repeat 7] [--threads 2]

Each round runs the plan once with the stem kernel bound and once without (ConvOp._bind_stem
switched off, the plan bound again), timing every step; printed: the median per step of the
layers the kernel takes and of the whole forward, both ways, wall time with ``--threads`` threads
and, with ``--threads 1``, process CPU time (what a shared machine disturbs least).

Measured (float32, AMD EPYC Zen 2, 2 cores shared with 2-3 other jobs): the ResNet-50 stem at
batch 8, 7x7/2 3 -> 64 channels with the folded batchnorm and relu, one thread CPU time
47-51 ms (im2col + GEMM) -> 24.7-25.5 ms (76 GFLOP/s; OpenBLAS's 2048^3 sgemm: 87); the same
kernel with blocked.py's 4 x 2 tile and a separate epilogue pass took 35-37 ms, with the 6 x 2
tile but a scalar write-out loop 38.6 ms: the write-out with bias and relu in registers made the
difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlang.environment import tune_threads  # noqa: E402

tune_threads()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import cnnlang  # noqa: E402
from cnnlang.model import resolve  # noqa: E402
from cnnlang.runtime.ops.conv import ConvOp  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    model = cnnlang.load(resolve(args.model))
    net = model.build(seed=0, dtype="float32", passes="all").eval()
    x = np.random.default_rng(0).standard_normal((args.batch, *model.input_shape)).astype(np.float32)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    original = ConvOp._bind_stem
    results: dict[str, list[dict[str, float]]] = {"stem kernel": [], "im2col + GEMM": []}
    stems: set[str] = set()
    with threadpool_limits(args.threads):
        for round_ in range(args.repeat + 1):
            for variant in results:
                ConvOp._bind_stem = original if variant == "stem kernel" else (lambda self, x, out: None)
                plan = net.inference_plan
                net.forward(x)  # binds the plan (first call) ...
                plan._runs = None  # ... and again with this variant
                net.forward(x)
                timings: dict[str, float] = {}
                start = clock()
                plan.forward(plan.input_buffer(args.batch), plan._bound_context, timings)
                timings["(forward)"] = clock() - start
                if variant == "stem kernel":
                    stems |= {s.node for s, r in zip(plan.steps, plan._runs) if "bind_stem" in getattr(r, "__qualname__", "")}
                if round_:
                    results[variant].append(timings)
    ConvOp._bind_stem = original
    if args.threads == 1:
        print("(one thread: process CPU time; per-step times are wall)")
    for node in [*sorted(stems), "(forward)"]:
        a, b = (statistics.median(t[node] for t in results[v]) * 1e3 for v in results)
        print(f"{node:24s} stem kernel {a:8.2f} ms   im2col + GEMM {b:8.2f} ms   ratio {b / a:5.2f}x")


if __name__ == "__main__":
    main()
