"""The register-blocked inference kernels with their epilogue in registers (runtime/kernels/cpu/
stem.py and gemm_epilogue.py) against the paths they replace (im2col or the 1x1 view, OpenBLAS's GEMM,
epilogue.py's pass), in a zoo model's optimised inference plan, same process, alternating.

    python benchmarks/bench_register_blocked.py [--model resnet50] [--batch 8] [--repeat 7] [--threads 2] [--every]
    python benchmarks/bench_register_blocked.py --pointwise-shapes [--repeat 5] [--threads 1]

Each round runs the plan once with the kernels bound and once without (ConvOp._bind_stem and
_bind_pointwise switched off, the plan bound again), timing every step; printed: the median per
step of the layers the kernels take, their sum, and the whole forward, both ways, wall time with
``--threads`` threads and, with ``--threads 1``, process CPU time for the whole forward (what a
shared machine disturbs least; the steps are wall time).

``--pointwise-shapes`` times gemm_epilogue.py's kernel alone against np.matmul + epilogue.py's pass
on ResNet-50's 1x1 shapes at batch 8 (pixels, C -> O, residual), alternating.

Measured (float32, AMD EPYC Zen 2, 2 cores shared with 2-3 other jobs): the ResNet-50 stem at
batch 8, 7x7/2 3 -> 64 channels with the folded batchnorm and relu, one thread CPU time
47-51 ms (im2col + GEMM) -> 24.7-25.5 ms (76 GFLOP/s; OpenBLAS's 2048^3 sgemm: 87); the same
kernel with blocked.py's 4 x 2 tile and a separate epilogue pass took 35-37 ms, with the 6 x 2
tile but a scalar write-out loop 38.6 ms: the write-out with bias and relu in registers made the
difference. The 1x1 kernel, one thread CPU time, against matmul + epilogue (--pointwise-shapes):
56x56 64->64 relu 1.30-1.57x, 64->256 + residual + relu 1.07 (its first, 96-pixel-block loop
order) then 1.33-1.36x, 64->256 1.42-1.77x, 256->64 1.00-1.18x, 256->128 1.03-1.17x; 28x28
1.09-1.26x; 14x14 0.98-1.16x; 7x7 0.92-1.05x (left to OpenBLAS: POINTWISE_MIN_PIXELS). The
whole ResNet-50 forward with both kernels, one thread CPU time: 977 -> 907 ms (1.08x; the
kernels' layers 758 -> 720 ms wall, loaded). With 2 threads the load (3-5 other runnable
threads on 2 cores) made wall times meaningless (fc1: 1.2 ms one run, 87 ms the next); at a quiet
moment, two threads: ResNet-50 466 -> 430 and 477 -> 437 ms, GoogLeNet 171 -> 152 ms.
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


#: The bind functions whose closures run the kernels (their __qualname__ starts with the name).
KERNELS = ("bind_stem", "bind_pointwise", "bind_columns")
POINTWISE_SHAPES = [  # ResNet-50 at batch 8: (name, pixels, C, O, residual, relu)
    ("56x56 64->64 relu", 25088, 64, 64, False, True), ("56x56 64->256 +res relu", 25088, 64, 256, True, True),
    ("56x56 64->256", 25088, 64, 256, False, False), ("56x56 256->64 relu", 25088, 256, 64, False, True),
    ("56x56 256->128 relu", 25088, 256, 128, False, True), ("28x28 128->512 +res relu", 6272, 128, 512, True, True),
    ("28x28 512->128 relu", 6272, 512, 128, False, True), ("14x14 256->1024 +res relu", 1568, 256, 1024, True, True),
    ("14x14 1024->256 relu", 1568, 1024, 256, False, True), ("7x7 512->2048 +res relu", 392, 512, 2048, True, True),
    ("7x7 2048->512 relu", 392, 2048, 512, False, True),
]


def pointwise_shapes(repeat: int, threads: int) -> None:
    from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace
    from cnnlang.runtime.kernels.cpu.epilogue import NONE, RELU, bias_activation, bias_residual_activation
    from cnnlang.runtime.kernels.cpu.gemm_epilogue import bind_pointwise

    rng = np.random.default_rng(0)
    clock = time.process_time if threads == 1 else time.perf_counter
    ws = ConvWorkspace()
    for name, m, c, o, residual, relu in POINTWISE_SHAPES:
        kind = RELU if relu else NONE
        x = rng.standard_normal((m, c)).astype(np.float32)
        w = (rng.standard_normal((o, c)) / 8).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        r = rng.standard_normal((m, o)).astype(np.float32) if residual else None
        y_old, y_new = np.empty((m, o), np.float32), np.empty((m, o), np.float32)

        def old() -> None:
            np.matmul(x, w.T, out=y_old)
            if residual:
                bias_residual_activation(y_old, b, r, kind)
            else:
                bias_activation(y_old, b, kind)

        new = bind_pointwise(x, w, b, y_new, kind, ws, r)
        times: dict = {old: [], new: []}
        for round_ in range(repeat + 1):
            for f in times:
                start = clock()
                f()
                if round_:
                    times[f].append(clock() - start)
        a, b_ = (statistics.median(times[f]) * 1e3 for f in (old, new))
        print(f"{name:26s} matmul + epilogue {a:7.2f} ms   pointwise {b_:7.2f} ms   ratio {a / b_:5.2f}x   "
              f"{2 * m * c * o / b_ / 1e6:5.1f} GFLOP/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", action="store_true", help="print every step, not only the layers the kernels take")
    parser.add_argument("--pointwise-shapes", action="store_true",
                        help="time the 1x1 kernel alone on ResNet-50's shapes")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    if args.pointwise_shapes:
        with threadpool_limits(args.threads):
            pointwise_shapes(args.repeat, args.threads)
        return
    model = cnnlang.load(resolve(args.model))
    net = model.build(seed=0, dtype="float32", passes="all").eval()
    x = np.random.default_rng(0).standard_normal((args.batch, *model.input_shape)).astype(np.float32)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    originals = ConvOp._bind_stem, ConvOp._bind_pointwise
    results: dict[str, list[dict[str, float]]] = {"new": [], "old": []}
    taken: set[str] = set()
    with threadpool_limits(args.threads):
        for round_ in range(args.repeat + 1):
            for variant in results:
                if variant == "new":
                    ConvOp._bind_stem, ConvOp._bind_pointwise = originals
                else:
                    ConvOp._bind_stem = ConvOp._bind_pointwise = lambda self, inputs, out: None
                plan = net.inference_plan
                net.forward(x)  # binds the plan (first call) ...
                plan._runs = None  # ... and again with this variant
                net.forward(x)
                timings: dict[str, float] = {}
                start = clock()
                plan.forward(plan.input_buffer(args.batch), plan._bound_context, timings)
                timings["(forward)"] = clock() - start
                if variant == "new":
                    taken |= {s.node for s, r in zip(plan.steps, plan._runs)
                              if getattr(r, "__qualname__", "").split(".")[0] in KERNELS}
                if round_:
                    results[variant].append(timings)
    ConvOp._bind_stem, ConvOp._bind_pointwise = originals
    if args.threads == 1:
        print("(one thread: the forward in process CPU time; the steps in wall time)")
    order = [step.node for step in net.inference_plan.steps if step.node in taken]
    for variant in results:
        for t in results[variant]:
            t["(these layers)"] = sum(t[node] for node in order)
    nodes = [step.node for step in net.inference_plan.steps] if args.every else order
    for node in [*nodes, "(these layers)", "(forward)"]:
        a, b = (statistics.median(t[node] for t in results[v]) * 1e3 for v in results)
        print(f"{node:28s} new {a:8.2f} ms   old {b:8.2f} ms   ratio {b / a:5.2f}x")


if __name__ == "__main__":
    main()
