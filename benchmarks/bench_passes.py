"""What the optimisation passes buy at inference: all passes against none.

    python benchmarks/bench_passes.py [--models resnet50 googlenet vgg16] [--batch 8] [--repeat 7] [--per-op] [--json FILE]

For each model (3x224x224, float32, batch 8 by default) it builds two networks with the same
seeded weights, one with ``passes="all"`` and one without, checks that their outputs agree,
warms each up (2 forward passes and at least 2 s), then times ``Network.forward`` in eval mode
``--repeat`` times *alternating* between the two, so that a change in machine load hits both
alike; it reports the median of each, the speed-up (median unoptimised / median optimised), and
the activation memory each allocates (``Network.activation_bytes``: every node's output buffer
without passes, the planned slots with them; neither counts the input) and, apart, the conv scratch (column
buffers: one per conv layer without passes, one shared with them).
``--per-op`` adds where the time goes, per op, from the per-node timings (sums of per-node
medians; a fused node's time counts under its anchor op). Goals (issue 6): speed-up >= 1.3 on
resnet50, activation memory at least 40 % less on googlenet.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from cnnlang.environment import tune_threads

tune_threads()  # first: OpenBLAS/OpenMP options that apply only before NumPy loads
import cnnlang  # noqa: E402
import numpy as np  # noqa: E402
from bench_runtime import cpu_busy  # this folder is on the path when the script runs

GOALS = {"resnet50": ("speedup", 1.3), "googlenet": ("memory_saved", 0.40)}


def warm_up(forward, runs: int = 2, seconds: float = 2.0) -> None:
    start, done = time.perf_counter(), 0
    while done < runs or time.perf_counter() - start < seconds:
        forward()
        done += 1


def per_op(net, x, graph, runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        timings: dict[str, float] = {}
        net.forward(x, timings=timings)
        for node, seconds in timings.items():
            samples.setdefault(node, []).append(seconds)
    ops: dict[str, float] = {}
    for node, values in samples.items():
        op = graph.nodes[node]["op"]
        ops[op] = ops.get(op, 0.0) + statistics.median(values)
    return dict(sorted(ops.items(), key=lambda kv: -kv[1]))


def measure(name: str, batch: int, repeat: int, with_ops: bool) -> dict:
    model = cnnlang.load(name)
    plain = model.build(seed=0).eval()
    fast = model.build(seed=0, passes="all").eval()
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape)).astype(np.float32)
    reference, optimised = plain.forward(x), fast.forward(x)
    difference = float(np.max(np.abs(optimised - reference)) / np.max(np.abs(reference)))
    warm_up(lambda: plain.forward(x))
    warm_up(lambda: fast.forward(x))
    times: dict[str, list[float]] = {"none": [], "all": []}
    for _ in range(repeat):
        for label, net in (("none", plain), ("all", fast)):
            start = time.perf_counter()
            net.forward(x)
            times[label].append(time.perf_counter() - start)
    none_s, all_s = statistics.median(times["none"]), statistics.median(times["all"])
    none_bytes, all_bytes = plain.activation_bytes(batch), fast.activation_bytes(batch)
    none_scratch, all_scratch = plain.plan.workspace_bytes(), fast.inference_plan.workspace_bytes()
    result = {
        "model": name, "batch": batch, "input": list(model.input_shape), "repeat": repeat,
        "none_s": none_s, "all_s": all_s, "times": times, "speedup": none_s / all_s,
        "none_images_per_s": batch / none_s, "all_images_per_s": batch / all_s,
        "none_activation_bytes": none_bytes, "all_activation_bytes": all_bytes,
        "none_workspace_bytes": none_scratch, "all_workspace_bytes": all_scratch,
        "memory_saved": 1 - all_bytes / none_bytes, "max_relative_difference": difference,
    }
    if with_ops:
        result["ops_none"] = per_op(plain, x, model.graph, max(3, repeat // 2))
        result["ops_all"] = per_op(fast, x, fast.inference_plan.graph, max(3, repeat // 2))
    return result


def report(r: dict) -> str:
    lines = [
        f"{r['model']} ({'x'.join(map(str, r['input']))}, batch {r['batch']}, float32; median of {r['repeat']} alternating runs)",
        f"  no passes  {r['none_images_per_s']:8.1f} images/s  {r['none_s'] * 1000:9.1f} ms/batch  "
        f"activations {r['none_activation_bytes'] / 1e6:8.1f} MB  conv scratch {r['none_workspace_bytes'] / 1e6:6.1f} MB",
        f"  all passes {r['all_images_per_s']:8.1f} images/s  {r['all_s'] * 1000:9.1f} ms/batch  "
        f"activations {r['all_activation_bytes'] / 1e6:8.1f} MB  conv scratch {r['all_workspace_bytes'] / 1e6:6.1f} MB",
        f"  speed-up {r['speedup']:.2f}x, activation memory {r['memory_saved']:.0%} less; "
        f"outputs agree to {r['max_relative_difference']:.1e} of their scale",
    ]
    goal = GOALS.get(r["model"])
    if goal:
        key, target = goal
        met = r[key] >= target
        lines.append(f"  goal: {key} >= {target:g}: {'met' if met else 'NOT met'} ({r[key]:.2f})")
    for phase in ("none", "all"):
        if f"ops_{phase}" in r:
            ops = ", ".join(f"{op} {s * 1000:.1f}" for op, s in r[f"ops_{phase}"].items())
            lines.append(f"  ms per op, {phase:4} passes: {ops}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["resnet50", "googlenet", "vgg16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--per-op", action="store_true", help="also show time per op, with and without passes")
    parser.add_argument("--json", type=Path, help="write the results here as well")
    args = parser.parse_args()
    busy = cpu_busy(1.0)
    if busy is not None and busy > 0.2:
        print(f"warning: the CPUs were {busy:.0%} busy before starting; timings will be noisy (ratios less so)")
    results = []
    for name in args.models:
        results.append(measure(name, args.batch, args.repeat, args.per_op))
        print(report(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
