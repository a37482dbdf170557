"""Every target of issue 16 (CPU speed) as one table: cnnlang against PyTorch and ONNX Runtime.

    python benchmarks/bench_targets.py [--only CASE ...] [--repeat R] [--rounds N] [--threads T] [--json FILE]

Each row times one model, batch and task in cnnlang, in PyTorch (the layer twins, NCHW and
channels-last; the faster is shown) and, for inference, in ONNX Runtime (cnnlang's own ONNX
export), with the same weights and input, every measurement in a process of its own limited to
``--threads`` threads (default 2): ``cnnlang.compare`` does the timing, as ``cnnlang bench
--compare`` does. A training step is forward, cross-entropy, backward and a plain SGD update;
inference is cnnlang with all optimisation passes. A measurement is the median of ``--repeat`` runs,
or of more to fill 0.5 s, after two warm-up runs; each framework is measured ``--rounds`` times,
the frameworks taking turns, because on a shared machine a slow spell would otherwise fall on one
side only. Ratio = the reference's time / cnnlang's (above 1, cnnlang is faster), against the
reference the target names, the median of the rounds' ratios. The last row times every distinct
conv layer of the zoo (input shape and arguments) at batch 8 as its own network, in GFLOP/s (2 x
MACs / time; Winograd layers count their direct MACs) against the float32 GEMM rate (a NumPy
2048^3 matmul) measured in the same process, before and after, in ``--rounds`` rounds over all the
layers (a layer's share: the median of its rounds'). The lowest of them are then timed in
ONNX Runtime too (the same one-layer network, the time its own profile gives the Conv node, without
the layout changes it adds around a lone layer), against the same GEMM rate: what the target asks
of a layer measured beside what another tuned runtime reaches on it.

``resnet18-cifar-train`` uses benchmarks/models/resnet18_cifar.cnn (ResNet-18 with a 3x3 stride-1
stem); the MobileNet rows use zoo/mobilenet_v1.cnn and are skipped when it is absent. Run it on a
quiet machine: the script samples the CPUs for 3 s first and says how busy they were.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_runtime import cpu_busy  # the script's own folder is on sys.path

HERE = Path(__file__).resolve().parent
CONV_LAYER_TARGET = 0.70
# A layer's median is of this many seconds of its runs at least: with three runs of the small
# layers, the count of layers at the target moved from 142 to 107 of 178 between two runs.
LAYER_AT_LEAST_S = 0.2
#: The lowest conv layers listed under the table, each also timed in ONNX Runtime.
LOWEST_SHOWN = 12


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    model: str
    batch: int
    train: bool
    reference: str  # the framework the target is stated against
    target: float  # the least ratio (reference time / cnnlang time) that meets it
    target_text: str


CASES = [
    Case("lenet5-train", "LeNet-5, b64, training step", "lenet5", 64, True, "torch", 2.0, ">= 2x PyTorch"),
    Case("resnet20-train", "resnet20, b64, 32x32, training step", "resnet20", 64, True, "torch", 1.2, ">= 1.2x PyTorch"),
    Case("resnet18-cifar-train", "ResNet-18 CIFAR stem, b64, 32x32, training step",
         str(HERE / "models" / "resnet18_cifar.cnn"), 64, True, "torch", 1.2, ">= 1.2x PyTorch"),
    Case("resnet18-train", "ResNet-18, b32, 224x224, training step", "resnet18", 32, True, "torch", 1.0, ">= 1x PyTorch"),
    Case("resnet50-infer", "ResNet-50, b8, 224x224, inference", "resnet50", 8, False, "onnxruntime", 1.0, ">= 1x ORT"),
    Case("googlenet-infer", "GoogLeNet, b8, 224x224, inference", "googlenet", 8, False, "onnxruntime", 1.0, ">= 1x ORT"),
    Case("vgg16-infer", "VGG-16, b8, 224x224, inference", "vgg16", 8, False, "onnxruntime", 1.0, ">= 1x ORT"),
    Case("lenet5-latency", "LeNet-5, b1, inference latency", "lenet5", 1, False, "onnxruntime", 0.5, "<= 2x ORT's latency"),
    Case("mobilenet-infer", "MobileNet v1, b8, 224x224, inference", "mobilenet_v1", 8, False, "torch", 1.0, ">= 1x PyTorch"),
    Case("mobilenet-train", "MobileNet v1, b8, 224x224, training step", "mobilenet_v1", 8, True, "torch", 1.0, ">= 1x PyTorch"),
]
ZOO_CONVS = "zoo-conv-layers"
NAMES = [case.name for case in CASES] + [ZOO_CONVS]
NAMES_TEXT = {"torch": "PyTorch", "onnxruntime": "ORT"}


# ---- one row -----------------------------------------------------------------------------------


def run_case(case: Case, repeat: int, threads: int, rounds: int = 1) -> dict:
    """Time ``case`` in every framework ``rounds`` times, the frameworks taking turns (the order
    reversed every other round), so a slow spell of a shared machine falls on all of them."""
    from cnnlang.compare.worker import time_in_subprocess
    from cnnlang.model import ModelNotFound, resolve

    try:
        resolve(case.model)
    except ModelNotFound:
        return {"skipped": f"{case.model} is not in this checkout's zoo"}
    frameworks = ["cnnlang", "torch"] + ([] if case.train else ["onnxruntime"])
    samples: dict[str, list[dict]] = {framework: [] for framework in frameworks}
    for turn in range(rounds):
        for framework in frameworks if turn % 2 == 0 else frameworks[::-1]:
            samples[framework].append(time_in_subprocess(framework, case.model, batch=case.batch, train=case.train,
                                                         repeat=repeat, threads=threads))
    row: dict = {framework: median_timing(timings) for framework, timings in samples.items()}
    # Each round's ratio compares times taken minutes apart; the median of those is the row's ratio.
    ratios = [reference["seconds"] / own["seconds"] for reference, own in zip(samples[case.reference], samples["cnnlang"])]
    ratio = statistics.median(ratios)
    row.update(ratio=ratio, round_ratios=ratios, met=ratio >= case.target)
    return row


def median_timing(timings: list[dict]) -> dict:
    """The timing with the median seconds (the lower of the middle two for an even count)."""
    ordered = sorted(timings, key=lambda timing: timing["seconds"])
    return ordered[(len(ordered) - 1) // 2]


def run_zoo_convs(repeat: int, threads: int, rounds: int = 1) -> dict:
    """Every distinct conv layer of the zoo, timed at batch 8 in a worker process; the lowest
    LOWEST_SHOWN of them also in ONNX Runtime."""
    env = dict(os.environ, **{f"{pool}_NUM_THREADS": str(threads) for pool in ("OMP", "NUMBA", "OPENBLAS")})
    from cnnlang.environment import SETTINGS

    for name, value in SETTINGS.items():
        env.setdefault(name, value)
    command = [sys.executable, __file__, "--zoo-convs-worker", str(repeat), "--rounds", str(rounds)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"timing the zoo's conv layers failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    shares = [layer["gemm_share"] for layer in result["layers"]]
    result.update(ratio=min(shares), median=statistics.median(shares), met=min(shares) >= CONV_LAYER_TARGET,
                  meeting=sum(share >= CONV_LAYER_TARGET for share in shares))
    time_lowest_in_onnxruntime(result, repeat, threads)
    return result


def time_lowest_in_onnxruntime(result: dict, repeat: int, threads: int) -> None:
    """``layer["onnxruntime"]`` for the lowest LOWEST_SHOWN layers: the same one-layer network's
    Conv node in ONNX Runtime (its profile's time, in a process of its own), its GFLOP/s and its
    share of the GEMM rate measured beside the layer in cnnlang's run; or ``{"error": ...}`` where
    that timing failed, so that one layer does not cost the whole run's table."""
    from cnnlang.compare.worker import time_in_subprocess

    for layer in lowest_layers(result["layers"]):
        source = one_layer_network(layer["input"], layer["conv"])
        try:
            timing = time_in_subprocess("onnxruntime", source, batch=result["batch"], repeat=repeat, threads=threads,
                                        op="Conv")
        except RuntimeError as error:
            layer["onnxruntime"] = {"error": str(error)}
            continue
        gflops = 2 * layer["macs"] / timing["seconds"] / 1e9
        share = gflops / layer["gemm_gflops"]
        layer["onnxruntime"] = {"seconds": timing["seconds"], "gflops": gflops, "gemm_share": share}


def lowest_layers(layers: list[dict], count: int = LOWEST_SHOWN) -> list[dict]:
    """The ``count`` layers with the lowest share of the GEMM rate, lowest first."""
    return sorted(layers, key=lambda layer: layer["gemm_share"])[:count]


def one_layer_network(shape, conv: str) -> str:
    """The source of a network of one conv layer (``conv``, as :func:`conv_source` writes it) on a
    ``shape`` (C, H, W) input."""
    return f"network one {{ input {'x'.join(map(str, shape))}\n layer: {conv} }}"


def zoo_convs_worker(repeat: int, batch: int = 8, rounds: int = 1) -> dict:
    """In a fresh process: the distinct conv layers (input shape, arguments) of every zoo model,
    each as a one-layer network with all passes, all built first; then ``rounds`` rounds over all
    of them, each timing a layer as the median of its node's forward time over ``repeat`` runs or
    LAYER_AT_LEAST_S seconds, whichever is more. Each round's share of sgemm is against the GEMM
    rate measured just before and just after the layer (their mean): on a shared machine that rate
    moved between 92 and 154 GFLOP/s from one second to the next (AMD EPYC, 2 cores), so a rate
    from the start and the end of the run could misjudge a layer by that much. A layer's seconds,
    share and rate are the medians of its rounds', as the model rows' ratios are: a slow spell of
    the machine (a short layer measured 3-4x slower for seconds at a time, main thread included,
    on an AMD EPYC VM) then falls on one round of a layer, not on its whole result."""
    import cnnlang
    from cnnlang.compare.frameworks import bench_input
    from cnnlang.compare.timing import gemm_gflops

    layers: dict[tuple, dict] = {}
    for name in cnnlang.zoo_names():
        graph = cnnlang.load(name).graph
        for node in graph.nodes:
            data = graph.nodes[node]
            if data.get("op") != "conv":
                continue
            shape = tuple(graph.nodes[data["inputs"][0]]["shape"])
            key = (shape, conv_source(data["layer"]))
            layers.setdefault(key, {"first_in": f"{name}/{node}", "input": list(shape), "conv": key[1], "macs": data["macs"] * batch})
    built = []
    for (shape, conv), layer in layers.items():
        model = cnnlang.load(one_layer_network(shape, conv))
        net = model.build(seed=0, passes="all").eval()
        x = bench_input(model, batch, 0)
        net.forward(x)
        net.forward(x)
        built.append((layer, net, x, []))  # then each round's (seconds, GEMM rate beside it)
    gemm_before = gemm_gflops()
    gemm = gemm_before
    for _ in range(rounds):
        for layer, net, x, rounds_seen in built:
            samples: list[float] = []
            while len(samples) < repeat or sum(samples) < LAYER_AT_LEAST_S:
                timings: dict[str, float] = {}
                net.forward(x, timings=timings)
                samples.append(timings["layer"])
            after = gemm_gflops(repeat=1)
            rounds_seen.append((statistics.median(samples), (gemm + after) / 2))
            gemm = after
    for layer, _, _, rounds_seen in built:
        layer["seconds"] = statistics.median(seconds for seconds, _ in rounds_seen)
        layer["gflops"] = 2 * layer["macs"] / layer["seconds"] / 1e9
        layer["gemm_gflops"] = statistics.median(rate for _, rate in rounds_seen)
        layer["round_shares"] = [2 * layer["macs"] / seconds / 1e9 / rate for seconds, rate in rounds_seen]
        layer["gemm_share"] = statistics.median(layer["round_shares"])
    adjacent = [rate for *_, rounds_seen in built for _, rate in rounds_seen]
    return {"batch": batch, "rounds": rounds, "gemm_gflops": statistics.median(adjacent),
            "gemm_range": [min(adjacent), max(adjacent)], "gemm_before_after": [gemm_before, gemm],
            "layers": list(layers.values())}


def conv_source(layer) -> str:
    """The ``conv(...)`` call that makes ``layer`` again."""
    size = "x".join
    pad = layer.pad if isinstance(layer.pad, str) else size(map(str, layer.pad))
    return (f"conv({layer.filters}, {size(map(str, layer.kernel))}, stride = {size(map(str, layer.stride))}, pad = {pad}, "
            f"dilation = {size(map(str, layer.dilation))}, groups = {layer.groups}, bias = {str(layer.bias).lower()})")


# ---- the table -----------------------------------------------------------------------------------


def milliseconds(timing: dict | None) -> str:
    if not timing:
        return ""
    layout = f" ({timing['best']})" if "best" in timing else ""
    return f"{timing['seconds'] * 1000:.2f} ms{layout}"


def table(results: dict) -> str:
    lines = ["| case | cnnlang | PyTorch (best layout) | ORT | ratio | target | met? |", "|---|---|---|---|---|---|---|"]
    for case in CASES:
        if case.name not in results:
            continue
        row = results[case.name]
        if "skipped" in row:
            lines.append(f"| {case.label} | skipped: {row['skipped']} | | | | {case.target_text} | |")
            continue
        lines.append(
            f"| {case.label} | {milliseconds(row['cnnlang'])} | {milliseconds(row['torch'])} | "
            f"{milliseconds(row.get('onnxruntime'))} | {row['ratio']:.2f}x {NAMES_TEXT[case.reference]}{spread(row)} | "
            f"{case.target_text} | {'yes' if row['met'] else '**no**'} |")
    if ZOO_CONVS in results:
        row = results[ZOO_CONVS]
        lines.append(
            f"| every zoo conv layer, b8, forward ({len(row['layers'])} distinct) | {row['meeting']} of {len(row['layers'])} "
            f"at >= {CONV_LAYER_TARGET:.0%}; median {row['median']:.0%} | | | lowest {row['ratio']:.0%} of sgemm "
            f"({gemm_rates(row)}) | >= {CONV_LAYER_TARGET:.0%} each | {'yes' if row['met'] else '**no**'} |")
    return "\n".join(lines)


def spread(row: dict) -> str:
    ratios = row.get("round_ratios", [])
    return f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""


def slowest_convs(row: dict) -> str:
    lines = [f"Lowest conv layers (of {len(row['layers'])}; each against the GEMM rate measured beside it, "
             f"{gemm_rates(row)}; at the start and end of the run "
             + "/".join(f"{g:.0f}" for g in row["gemm_before_after"]) + "; ORT: the same layer in ONNX Runtime, "
             "its profile's Conv time, against the same rate):"]
    lines += [f"- {layer['first_in']}: {'x'.join(map(str, layer['input']))} {layer['conv']}: {layer['gflops']:.1f} GFLOP/s, "
              f"{layer['gemm_share']:.0%} of {layer['gemm_gflops']:.0f}{round_range(layer)}{reference_share(layer)}"
              for layer in lowest_layers(row["layers"])]
    return "\n".join(lines)


def round_range(layer: dict) -> str:
    shares = layer.get("round_shares", [])
    return f" (rounds {min(shares):.0%}-{max(shares):.0%})" if len(shares) > 1 else ""


def reference_share(layer: dict) -> str:
    ort = layer.get("onnxruntime")
    if not ort:
        return ""
    if "error" in ort:
        return f"; ORT: {ort['error']}"
    return f"; ORT {ort['gflops']:.1f} GFLOP/s, {ort['gemm_share']:.0%}"


def gemm_rates(row: dict) -> str:
    """The sgemm rates the layers were measured against: their median and range."""
    low, high = row["gemm_range"]
    return f"GEMM {row['gemm_gflops']:.0f} GFLOP/s, {low:.0f}-{high:.0f} beside the layers"


# ---- the machine -----------------------------------------------------------------------------------


def machine(threads: int) -> str:
    cpu, flags = platform.processor() or "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "neither AVX2 nor AVX-512" if flags else "?"
    versions = []
    for package in ("numpy", "numba", "torch", "onnxruntime"):
        try:
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
        except Exception:  # noqa: BLE001 - an optional package
            versions.append(f"{package} missing")
    return f"Machine: {cpu}, {isa}, {os.cpu_count()} CPUs; {threads} threads for each framework; {', '.join(versions)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, metavar="CASE", help=f"run only these: {', '.join(NAMES)}")
    parser.add_argument("--repeat", type=int, default=5, metavar="R", help="timed runs per measurement (median; default 5)")
    parser.add_argument("--rounds", type=int, default=3, metavar="N",
                        help="times each framework is timed per row, taking turns, and rounds over the zoo's conv "
                             "layers (median; default 3)")
    parser.add_argument("--threads", type=int, default=2, metavar="T", help="threads for every framework (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    parser.add_argument("--zoo-convs-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.zoo_convs_worker:
        print(json.dumps(zoo_convs_worker(args.zoo_convs_worker, rounds=args.rounds)))
        return 0
    if min(args.repeat, args.rounds, args.threads) < 1:
        parser.error("--repeat, --rounds and --threads must be at least 1")
    import importlib.util

    missing = [name for name in ("torch", "onnxruntime", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: the targets need {', '.join(missing)}: pip install torch 'cnnlang[onnx]'", file=sys.stderr)
        return 2

    busy = cpu_busy()
    started = time.perf_counter()
    results: dict = {}
    for name in args.only or NAMES:
        print(f"{name} ...", file=sys.stderr, flush=True)
        case_start = time.perf_counter()
        case = next((c for c in CASES if c.name == name), None)
        results[name] = (run_case(case, args.repeat, args.threads, args.rounds) if case
                         else run_zoo_convs(args.repeat, args.threads, args.rounds))
        print(f"  {time.perf_counter() - case_start:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    print(f"Command: python {' '.join([os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])])}")
    print(machine(args.threads))
    print(f"CPU busy before the run: {busy:.0%}; the run took {elapsed:.0f} s" if busy is not None else
          f"The run took {elapsed:.0f} s")
    from cnnlang.compare.frameworks import MEASURE_AT_LEAST_S, WARMUP_CALLS

    print(f"Times: each framework timed in {args.rounds} rounds, taking turns; a round is the median of "
          f"{args.repeat} runs or more ({MEASURE_AT_LEAST_S} s at least) after {WARMUP_CALLS} warm-ups in a "
          f"fresh process; shown: the median round. Ratio = the target's reference time / cnnlang's, the median "
          f"of the rounds' ratios (their range in brackets)\n")
    print(table(results))
    if ZOO_CONVS in results:
        print("\n" + slowest_convs(results[ZOO_CONVS]))
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "repeat": args.repeat, "rounds": args.rounds,
                                               "elapsed_s": elapsed, "busy_before": busy, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
