"""Where a training step's time goes: CPU time per op kind, forward and backward apart, and per conv kernel.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/profile_step.py [MODEL] \
        [--batch 64] [--steps 7] [--wall]

The step is bench_targets.py's (forward in training mode, softmax cross-entropy, backward, plain SGD). Each op's
forward and backward are wrapped with a clock, and so are conv.py's kernel entry points (rows "K", which overlap
the conv rows "F" and "B"); "T" rows are the whole step and its parts (the gap between "T backward" and the sum
of the "B" rows is the plan's own work: the fan-in sums and Python). Medians over ``--steps`` steps after two
warm-up steps, in ms. The clock is process CPU time (so that other processes on a shared machine count less:
run it with one thread) or, with ``--wall``, wall time.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlang.environment import tune_threads  # noqa: E402

tune_threads()

import cnnlang.runtime.kernels.cpu.conv as conv_kernels  # noqa: E402
from cnnlang.compare.frameworks import TRAIN_LR, bench_input, bench_labels  # noqa: E402
from cnnlang.model import load  # noqa: E402
from cnnlang.train.losses import softmax_cross_entropy  # noqa: E402

KERNELS = ["_wide_weight", "_wide_forward", "turn_weight", "_blocked_input_grad", "winograd_forward",
           "winograd_weight_grad", "_backward", "transform_weight_into", "_winograd_weight", "_forward",
           "bias_activation", "_blocked_forward", "_blocked_weight", "planar_forward", "_planar_weight"]


def kind(op) -> str:
    """The op's row: its layer type (+relu when one is fused), convs by kernel, stride, channels and output size."""
    if op.layer.op.startswith("conv"):
        o, c, kh, kw = op._weight_image
        return f"conv{kh}x{kw}/s{op._stride[0]} {c}->{o} {op._out_image[0]}x{op._out_image[1]}"
    return op.layer.op + ("+relu" if getattr(op, "activation", None) else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--wall", action="store_true", help="wall time instead of process CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    model = load(args.model)
    net = model.build(seed=0, dtype="float32")
    x, labels = bench_input(model, args.batch, 0), bench_labels(model, args.batch, 0)
    net.train()
    pairs = [(net.params[name], net.grads[name]) for name in net.trainable]
    current: dict[tuple[str, str], float] = collections.defaultdict(float)

    def timed(row, function):
        def call(*a, **kw):
            start = clock()
            result = function(*a, **kw)
            current[row] += clock() - start
            return result
        return call

    for step in net.plan.steps:
        row = kind(step.op)
        step.op.forward = timed(("F", row), step.op.forward)
        step.op.backward = timed(("B", row), step.op.backward)
    for name in KERNELS:
        setattr(conv_kernels, name, timed(("K", name), getattr(conv_kernels, name)))

    def train_step() -> None:
        start = clock()
        y = net.forward(x)
        current[("T", "forward")] += clock() - start
        mark = clock()
        _, dy = softmax_cross_entropy(y, labels)
        current[("T", "loss")] += clock() - mark
        mark = clock()
        net.backward(dy)
        current[("T", "backward")] += clock() - mark
        mark = clock()
        for p, g in pairs:
            p -= TRAIN_LR * g
        current[("T", "sgd")] += clock() - mark
        current[("T", "step")] += clock() - start

    samples: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for i in range(2 + args.steps):
        current.clear()
        train_step()
        if i >= 2:
            for row, seconds in current.items():
                samples[row].append(seconds)
    for ms, (part, row) in sorted(((statistics.median(v) * 1e3, k) for k, v in samples.items()), reverse=True):
        print(f"{part} {row:32s} {ms:8.2f}")


if __name__ == "__main__":
    main()
