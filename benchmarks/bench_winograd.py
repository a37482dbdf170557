"""Winograd F(2x2, 3x3) against im2col + GEMM on ResNet-50's stride-1 3x3 layers.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_winograd.py [--batch 1 8] [--repeat 7]

Forward only, float32, channels-last, pad 1, bias + relu in the epilogue (as the optimised
inference plan runs these layers), each with its own workspace; ms per call, the median of
``--repeat`` calls after warm-up, alternating the algorithms so machine load hits all alike.
Also the largest error of each against a float64 im2col reference, relative to the output's
largest magnitude. The ``winograd`` pass (cnnlang/passes/choose_algorithm.py) declines the
shapes where Winograd is not faster here. (F(4x4, 3x3) was measured here too and removed; its
figures are in docs/passes.md.)
"""

from __future__ import annotations

import argparse
import statistics
import time

from cnnlang.environment import tune_threads

tune_threads()  # first: OpenBLAS/OpenMP options that apply only before NumPy loads

import numpy as np  # noqa: E402

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_forward
from cnnlang.runtime.kernels.cpu.epilogue import RELU
from cnnlang.runtime.kernels.cpu.winograd import transform_weight, winograd_forward

#: (in channels, out channels, side) of ResNet-50's stride-1 3x3 convolutions (3, 3, 5 and 2 of
#: them; the first of stages 2-4 has stride 2).
SHAPES = [(64, 64, 56), (128, 128, 28), (256, 256, 14), (512, 512, 7)]
#: --extra: VGG-16's (the first has 3 input channels) and a few of GoogLeNet's.
EXTRA = [(3, 64, 224), (64, 64, 224), (128, 128, 112), (256, 256, 56), (512, 512, 28), (512, 512, 14),
         (96, 128, 28), (112, 224, 14), (160, 320, 7), (16, 32, 28), (32, 32, 56), (32, 64, 28)]
PADS = ((1, 1), (1, 1))


def run_shape(cin: int, channels: int, side: int, batch: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, side, side, cin)).astype(np.float32)
    w = (rng.standard_normal((channels, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32) * 0.1
    calls = {}
    outs = {}
    ws, wsw = ConvWorkspace(), ConvWorkspace()
    outs["im2col"] = np.empty((batch, side, side, channels), np.float32)
    calls["im2col"] = lambda: conv2d_forward(x, w, b, (1, 1), PADS, (1, 1), 1, outs["im2col"], ws, RELU)
    u = transform_weight(w, np.float32)
    outs["F(2x2)"] = np.empty_like(outs["im2col"])
    calls["F(2x2)"] = lambda: winograd_forward(x, u, b, PADS, outs["F(2x2)"], wsw, RELU)
    reference = np.empty((batch, side, side, channels))
    conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), PADS, (1, 1), 1, reference, None, RELU)
    scale = float(np.max(np.abs(reference)))
    for call in calls.values():
        for _ in range(3):
            call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeat):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {
        "shape": f"{cin}->{channels}ch @ {side}x{side}, batch {batch}",
        "ms": {k: statistics.median(v) * 1000 for k, v in times.items()},
        "error": {k: float(np.max(np.abs(outs[k] - reference))) / scale for k in calls},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--extra", action="store_true", help="VGG-16's and some of GoogLeNet's shapes instead")
    args = parser.parse_args()
    for batch in args.batch:
        for cin, channels, side in EXTRA if args.extra else SHAPES:
            r = run_shape(cin, channels, side, batch, args.repeat)
            base = r["ms"]["im2col"]
            cells = "  ".join(
                f"{k} {ms:7.2f} ms ({base / ms:4.2f}x, err {r['error'][k]:.1e})" for k, ms in r["ms"].items()
            )
            print(f"{r['shape']:26}  {cells}", flush=True)


if __name__ == "__main__":
    main()
