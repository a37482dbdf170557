"""blocked_wide.py's kernels (and the stride-2 input gradient by blocked_dx.py's kernel) against what the training
rule chose before them, per resnet20 layer and for a whole resnet20 training step, in one process, alternating.

    python benchmarks/bench_wide.py [--threads 1] [--repeat 9] [--only r16,r32,...] [--steps 7]

Per layer (batch 64, float32): forward (``keep=True``, as in training), dx, and dW after a kept forward (the
forward's time included: the kept columns are what the old path's dW reads), ms per call, median / min of
``--repeat`` interleaved calls, "old" a ``ConvWorkspace(wide=False)`` (Winograd, direct.py, im2col by the rule),
"new" the default rule. Then the training step (forward, softmax cross-entropy, backward, SGD with momentum)
with every conv's workspace switched between the two, step by step. With one thread the times are process CPU
time, so that other processes on a shared machine count less.

Measured 2026-12-05 on a shared 2-core AMD EPYC (AVX2), one thread, CPU time, ms, old -> new: 16 channels 32x32
forward 11.8 -> 5.6, dx 11.6 -> 5.4, dW 5.7 -> 4.9; 32 channels 16x16 forward 6.2 -> 5.1, dx 6.4 -> 5.1, dW 6.7
-> 5.4; 64 channels 8x8 dW 5.0 -> 4.4 (forward and dx stay Winograd's); 16 -> 32 stride 2 forward 6.1 -> 3.6, dx
8.7 -> 4.0; 32 -> 64 stride 2 forward 4.1 -> 3.8, dx 4.3 -> 3.4. The training step 425-440 -> 310-320 ms
(1.37x, three runs).
"""

from __future__ import annotations

import argparse
import gc
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
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward  # noqa: E402
from cnnlang.train.losses import softmax_cross_entropy  # noqa: E402
from cnnlang.train.optim import SGD  # noqa: E402

# name: (N, C, H, O, stride, kernel) -- resnet20's convs (padding (kernel - 1) / 2)
SHAPES = {
    "r16": (64, 16, 32, 16, 1, 3),
    "r32": (64, 32, 16, 32, 1, 3),
    "r64": (64, 64, 8, 64, 1, 3),
    "s16": (64, 16, 32, 32, 2, 3),
    "s32": (64, 32, 16, 64, 2, 3),
    "p16": (64, 16, 32, 32, 2, 1),  # the 1x1 stride-2 shortcuts (left to im2col by the rule)
}


def median_min(times):
    return f"{np.median(times):7.2f}/{min(times):6.2f}"


def layer(name, repeat, clock):
    n, c, h, o, s, k = SHAPES[name]
    pad = (k - 1) // 2
    ho = (h + 2 * pad - k) // s + 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, h, c), dtype=np.float32)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32)
    y = np.empty((n, ho, ho, o), np.float32)
    dy = rng.standard_normal(y.shape, dtype=np.float32)
    dw, dx = np.empty_like(w), np.empty_like(x)
    g = ((s, s), ((pad, pad), (pad, pad)), (1, 1), 1)
    variants = {}
    for key, ws in (("old", ConvWorkspace(wide=False)), ("new", ConvWorkspace())):
        variants["fwd " + key] = lambda ws=ws: conv2d_forward(x, w, None, *g, y, ws, keep=True)
        variants["dx " + key] = lambda ws=ws: conv2d_backward(x, w, dy, *g, dx, None, None, ws)
        variants["fwd+dW " + key] = lambda ws=ws: (conv2d_forward(x, w, None, *g, y, ws, keep=True),
                                                   conv2d_backward(x, w, dy, *g, None, dw, None, ws, kept=True))
    for fn in variants.values():
        fn()
    times = {key: [] for key in variants}
    for _ in range(repeat):
        for key, fn in variants.items():
            start = clock()
            fn()
            times[key].append((clock() - start) * 1e3)
    return "  ".join(f"{key} {median_min(t)}" for key, t in times.items())


def step_ab(rounds, clock):
    model = cnnlang.load("resnet20")
    net = model.build(seed=0).train()
    sgd = SGD(net.params, net.grads, net.trainable, lr=0.01, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, *model.input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, 64)
    workspaces = [o for o in gc.get_objects() if isinstance(o, ConvWorkspace)]

    def step():
        _, dlogits = softmax_cross_entropy(net.forward(x), labels)
        net.backward(dlogits)
        sgd.step()

    def mode(wide):
        for ws in workspaces:
            ws.wide = wide
            ws._plans.clear()  # the plans hold the rule's choices

    times = {"old": [], "new": []}
    for wide in (False, None):
        mode(wide)
        step()
    for _ in range(rounds):
        for key, wide in (("old", False), ("new", None)):
            mode(wide)
            step()  # the first step after a switch re-plans and re-sizes scratch
            start = clock()
            step()
            step()
            times[key].append((clock() - start) / 2 * 1e3)
    ratio = np.median(times["old"]) / np.median(times["new"])
    return f"old {median_min(times['old'])}  new {median_min(times['new'])}  old/new (medians) {ratio:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--steps", type=int, default=7, help="alternating rounds of the training step (0: none)")
    parser.add_argument("--only", help="comma-separated layer names: " + ",".join(SHAPES))
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    clock = time.process_time if args.threads == 1 else time.perf_counter
    unit = "process CPU ms" if args.threads == 1 else "wall ms"
    print(f"{args.threads} thread(s), {unit}, median/min")
    with threadpool_limits(args.threads):
        for name in (args.only.split(",") if args.only else SHAPES):
            print(f"{name:4s} {layer(name, args.repeat, clock)}", flush=True)
        if args.steps:
            print(f"resnet20 training step, batch 64: {step_ab(args.steps, clock)}")


if __name__ == "__main__":
    main()
