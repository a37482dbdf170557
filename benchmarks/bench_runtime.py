"""cnnlang's runtime against PyTorch (CPU): the performance table.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_runtime.py [--only CASE] [--quick] [--json FILE]

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set, make OpenBLAS pick a slow GEMM kernel, which
would slow cnnlang's convolutions and the GEMM reference alike; the script warns when they are.)

Cases (``--only`` takes one or more of these names):

- ``resnet18``: ResNet-18, 3x224x224, batch 8, float32 inference: images/s of cnnlang
  (``Network.forward`` in eval mode) and of PyTorch (the same architecture built by
  ``torch_reference.to_torch`` with the same weights, ``torch.inference_mode``), speed ratio
  cnnlang/PyTorch; target >= 0.5.
- ``lenet5``: LeNet-5, batch 64, float32 training step: forward in training mode, the gradient
  of softmax cross-entropy (mean over the batch) as dy, backward, and plain SGD
  ``p -= lr * g`` in place on every trainable parameter; ms per step and speed ratio
  cnnlang/PyTorch (= PyTorch ms / cnnlang ms); target >= 1.0.
- ``vgg16``: VGG-16, 3x224x224, batch 4, the convolution layers only: the sum of their forward
  times from ``cnnlang.cli.bench.measure`` (op == "conv"), GFLOP/s = 2 * MACs / time, against
  this machine's float32 GEMM throughput (numpy matmul, 2048 x 2048, median); target >= 50 %.
- ``startup``: wall time of ``cnnlang run resnet18 --repeat 0`` in a fresh process, first ever
  (an empty ``NUMBA_CACHE_DIR``, so every kernel is compiled) and cached (the same directory,
  later runs: the median of 3), with the time until the first forward pass starts and the first
  pass itself, as ``cnnlang run`` prints them on its ``start`` line (measured from the start of
  ``run``), and the same from the process launch (wall time less the first pass).

PyTorch runs with ``torch.set_num_threads(2)``, float32, in NCHW and in channels-last memory
format; the faster of the two is reported and named. Every measurement runs in its own
subprocess, so the two frameworks' thread pools never share a process. Times are medians of
several runs after a warm-up of at least 3 s (``--quick``: fewer runs, 1 s). The script samples
the CPUs for 3 s first and warns when other work is running: on a small machine numba's parallel
kernels slow down many times over when they share the cores, so run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SLOW_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
TORCH_THREADS = 2
CASES = ("resnet18", "lenet5", "vgg16", "startup")
TARGETS = {"resnet18": 0.5, "lenet5": 1.0, "vgg16": 0.5}


def repeats(quick: bool, full: int, fast: int) -> int:
    return fast if quick else full


def median_time(fn, runs: int, warmup: int, warmup_s: float = 0.0) -> tuple[float, list[float]]:
    """Median wall time of ``runs`` calls, after at least ``warmup`` calls and ``warmup_s``
    seconds of them (thread pools, allocators and clocks settle over the first second or so)."""
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warmup_s:
        fn()
        done += 1
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def warmup_seconds(quick: bool) -> float:
    return 1.0 if quick else 3.0


# ---- measurements (each runs inside a worker subprocess) ---------------------------------------


def cnnlang_inference(model_name: str, batch: int, quick: bool) -> dict:
    from cnnlang.environment import tune_threads

    tune_threads()  # first: OpenBLAS/OpenMP options that apply only before numpy loads
    import cnnlang
    import numpy as np

    model = cnnlang.load(model_name)
    net = model.build(seed=0, dtype="float32").eval()
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape)).astype(np.float32)
    seconds, times = median_time(lambda: net.forward(x), repeats(quick, 9, 3), 2, warmup_seconds(quick))
    by_op = per_op(model, [lambda t: net.forward(x, timings=t)], repeats(quick, 5, 2))
    return {"seconds": seconds, "times": times, "images_per_s": batch / seconds, "by_op": by_op}


def per_op(model, passes, runs: int) -> dict[str, dict[str, float]]:
    """Median seconds per node over ``runs`` (each pass fills a timings dict), summed per op:
    {phase: {op: seconds}} with one phase per entry of ``passes`` (forward, backward)."""
    names = ("forward", "backward")
    samples: list[dict[str, list[float]]] = [{} for _ in passes]
    for _ in range(runs):
        for phase, run in enumerate(passes):
            timings: dict[str, float] = {}
            run(timings)
            for node, seconds in timings.items():
                samples[phase].setdefault(node, []).append(seconds)
    out = {}
    for phase, nodes in enumerate(samples):
        ops: dict[str, float] = {}
        for node, values in nodes.items():
            op = model.graph.nodes[node]["op"]
            ops[op] = ops.get(op, 0.0) + statistics.median(values)
        out[names[phase]] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    return out


def torch_inference(model_name: str, batch: int, quick: bool) -> dict:
    # torch first, so that cnnlang's OpenMP settings (read when libgomp loads) leave it alone.
    import numpy as np
    import torch

    import cnnlang
    from torch_reference import to_input, to_torch

    torch.set_num_threads(TORCH_THREADS)
    model = cnnlang.load(model_name)
    net = model.build(seed=0, dtype="float32")
    x = np.random.default_rng(0).standard_normal((batch, *model.input_shape)).astype(np.float32)
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "layouts": {}}
    for layout, channels_last in (("NCHW", False), ("channels_last", True)):
        twin = to_torch(model, net, channels_last=channels_last).eval()
        xt = to_input(x, channels_last)

        def run():
            with torch.inference_mode():
                twin(xt)

        seconds, times = median_time(run, repeats(quick, 9, 3), 2, warmup_seconds(quick))
        result["layouts"][layout] = {"seconds": seconds, "times": times, "images_per_s": batch / seconds}
    best = min(result["layouts"], key=lambda k: result["layouts"][k]["seconds"])
    result.update(best=best, **result["layouts"][best])
    return result


def softmax_xent_grad(logits, labels):
    """d(mean softmax cross-entropy)/d(logits) for N x K logits."""
    import numpy as np

    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    grad = e / e.sum(axis=1, keepdims=True)
    grad[np.arange(len(labels)), labels] -= 1.0
    grad /= len(labels)
    return grad


def cnnlang_train(model_name: str, batch: int, quick: bool, lr: float = 0.01) -> dict:
    from cnnlang.environment import tune_threads

    tune_threads()  # first: OpenBLAS/OpenMP options that apply only before numpy loads
    import cnnlang
    import numpy as np

    model = cnnlang.load(model_name)
    net = model.build(seed=0, dtype="float32").train()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    labels = rng.integers(0, model.output_shape[0], batch)
    params = [(net.params[n], net.grads[n]) for n in net.trainable]

    def step():
        y = net.forward(x)
        net.backward(softmax_xent_grad(y, labels))
        for p, g in params:
            p -= lr * g

    seconds, times = median_time(step, repeats(quick, 31, 9), 3, warmup_seconds(quick))
    dy = softmax_xent_grad(net.forward(x), labels)
    by_op = per_op(model, [lambda t: net.forward(x, timings=t), lambda t: net.backward(dy, t)], repeats(quick, 11, 3))

    def update():
        for p, g in params:
            p -= lr * g

    by_op["sgd_update"], _ = median_time(update, repeats(quick, 11, 3), warmup=1)
    y = net.forward(x)
    by_op["loss_grad"], _ = median_time(lambda: softmax_xent_grad(y, labels), repeats(quick, 11, 3), warmup=1)
    return {"seconds": seconds, "times": times, "ms_per_step": seconds * 1e3, "by_op": by_op}


def torch_train(model_name: str, batch: int, quick: bool, lr: float = 0.01) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    import cnnlang
    from torch_reference import to_input, to_torch

    torch.set_num_threads(TORCH_THREADS)
    model = cnnlang.load(model_name)
    net = model.build(seed=0, dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    labels = torch.from_numpy(rng.integers(0, model.output_shape[0], batch))
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "layouts": {}}
    for layout, channels_last in (("NCHW", False), ("channels_last", True)):
        twin = to_torch(model, net, channels_last=channels_last).train()
        xt = to_input(x, channels_last)
        params = [p for p in twin.parameters() if p.requires_grad]

        def step():
            for p in params:
                p.grad = None
            loss = F.cross_entropy(twin(xt), labels)
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p.sub_(p.grad, alpha=lr)

        seconds, times = median_time(step, repeats(quick, 31, 9), 3, warmup_seconds(quick))
        result["layouts"][layout] = {"seconds": seconds, "times": times, "ms_per_step": seconds * 1e3}
    best = min(result["layouts"], key=lambda k: result["layouts"][k]["seconds"])
    result.update(best=best, **result["layouts"][best])
    return result


def gemm_peak(quick: bool, n: int = 2048) -> dict:
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    seconds, times = median_time(lambda: np.matmul(a, b, out=c), repeats(quick, 9, 5), 2, warmup_seconds(quick))
    return {"n": n, "seconds": seconds, "times": times, "gflops": 2 * n**3 / seconds / 1e9}


def cnnlang_conv_layers(model_name: str, batch: int, quick: bool) -> dict:
    import cnnlang
    from cnnlang.cli.bench import measure

    model = cnnlang.load(model_name)
    measure(model, batch, False, 1, 0, "float32")  # warm-up: thread pools, kernels, allocator
    result = measure(model, batch, False, repeats(quick, 5, 2), 0, "float32")
    convs = [row for row in result["layers"] if row["op"] == "conv"]
    seconds = sum(row["forward_s"] for row in convs)
    macs = sum(row["macs"] for row in convs)
    return {
        "seconds": seconds, "macs": macs, "gflops": 2 * macs / seconds / 1e9, "layers": convs,
        "inference_s": result["inference_s"],
    }


WORKERS = {
    "cnnlang_inference": cnnlang_inference, "torch_inference": torch_inference,
    "cnnlang_train": cnnlang_train, "torch_train": torch_train,
    "gemm_peak": gemm_peak, "cnnlang_conv_layers": cnnlang_conv_layers,
}


def in_subprocess(worker: str, *args, quick: bool) -> dict:
    """Run ``WORKERS[worker](*args, quick)`` in a fresh interpreter; its JSON result."""
    spec = json.dumps({"worker": worker, "args": list(args), "quick": quick})
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", spec],
        capture_output=True, text=True, cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {worker}{tuple(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_main(spec: str) -> None:
    sys.path.insert(0, str(HERE))
    request = json.loads(spec)
    result = WORKERS[request["worker"]](*request["args"], quick=request["quick"])
    print(json.dumps(result))


# ---- start-up ----------------------------------------------------------------------------------


def cnnlang_command() -> list[str]:
    """The installed ``cnnlang`` script beside this interpreter (no pyenv shim), else ``-m``."""
    script = Path(sys.executable).parent / "cnnlang"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cnnlang"]


START_LINE = re.compile(r"start\s+([\d.]+) s to load.*first pass ([\d.]+) ms")


def run_startup(env: dict) -> dict:
    command = [*cnnlang_command(), "run", "resnet18", "--repeat", "0"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stderr[-4000:]}")
    match = START_LINE.search(done.stdout)
    ready = float(match.group(1)) if match else None
    first_pass = float(match.group(2)) if match else None
    return {
        "command": shlex.join(command), "wall_s": wall, "ready_s": ready, "first_pass_ms": first_pass,
        # From the process launch (interpreter and imports included) to the first forward pass:
        # the wall time less the first pass (with --repeat 0 only the top-5 printout follows it).
        "launch_to_first_forward_s": wall - first_pass / 1e3 if first_pass is not None else None,
    }


def startup(quick: bool) -> dict:
    """First-ever run (empty numba cache) and cached runs (the same cache directory)."""
    with tempfile.TemporaryDirectory(prefix="cnnlang-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        first = run_startup(env)
        cached_runs = [run_startup(env) for _ in range(repeats(quick, 3, 1))]
    cached = sorted(cached_runs, key=lambda r: r["wall_s"])[len(cached_runs) // 2]  # the median run
    return {"first": first, "cached": cached, "cached_runs": cached_runs}


# ---- the cases -----------------------------------------------------------------------------------


def versus_torch(case: str, task: str, model: str, batch: int, quick: bool) -> dict:
    """cnnlang and PyTorch on one task; the ratio is PyTorch's time over cnnlang's (the speed ratio)."""
    mine = in_subprocess(f"cnnlang_{task}", model, batch, quick=quick)
    theirs = in_subprocess(f"torch_{task}", model, batch, quick=quick)
    ratio = theirs["seconds"] / mine["seconds"]
    return {"cnnlang": mine, "torch": theirs, "ratio": ratio, "target": TARGETS[case], "met": ratio >= TARGETS[case]}


def case_resnet18(quick: bool) -> dict:
    return versus_torch("resnet18", "inference", "resnet18", 8, quick)


def case_lenet5(quick: bool) -> dict:
    return versus_torch("lenet5", "train", "lenet5", 64, quick)


def case_vgg16(quick: bool) -> dict:
    peak = in_subprocess("gemm_peak", quick=quick)
    convs = in_subprocess("cnnlang_conv_layers", "vgg16", 4, quick=quick)
    fraction = convs["gflops"] / peak["gflops"]
    return {"cnnlang": convs, "gemm": peak, "ratio": fraction, "target": TARGETS["vgg16"],
            "met": fraction >= TARGETS["vgg16"]}


def case_startup(quick: bool) -> dict:
    return startup(quick)


RUNNERS = {"resnet18": case_resnet18, "lenet5": case_lenet5, "vgg16": case_vgg16, "startup": case_startup}


# ---- report ----------------------------------------------------------------------------------------


def mark(met: bool) -> str:
    return "yes" if met else "**no**"


def table(results: dict) -> str:
    rows = ["| Case | cnnlang | PyTorch / reference | Ratio | Target | Met |", "|---|---|---|---|---|---|"]
    if "resnet18" in results:
        r = results["resnet18"]
        t = r["torch"]
        other = "NCHW" if t["best"] == "channels_last" else "channels_last"
        rows.append(
            f"| ResNet-18 3x224x224, batch 8, inference | {r['cnnlang']['images_per_s']:.1f} images/s "
            f"({r['cnnlang']['seconds'] * 1e3:.0f} ms/batch) | {t['images_per_s']:.1f} images/s, {t['best']} "
            f"({t['seconds'] * 1e3:.0f} ms/batch; {other}: {t['layouts'][other]['images_per_s']:.1f}) "
            f"| {r['ratio']:.3f} (cnnlang/PyTorch speed) | >= {r['target']} | {mark(r['met'])} |"
        )
    if "lenet5" in results:
        r = results["lenet5"]
        t = r["torch"]
        other = "NCHW" if t["best"] == "channels_last" else "channels_last"
        rows.append(
            f"| LeNet-5 1x32x32, batch 64, training step (fwd + bwd + SGD) | {r['cnnlang']['ms_per_step']:.2f} ms/step "
            f"| {t['ms_per_step']:.2f} ms/step, {t['best']} ({other}: {t['layouts'][other]['ms_per_step']:.2f}) "
            f"| {r['ratio']:.3f} (PyTorch ms / cnnlang ms) | >= {r['target']} | {mark(r['met'])} |"
        )
    if "vgg16" in results:
        r = results["vgg16"]
        c = r["cnnlang"]
        rows.append(
            f"| VGG-16 3x224x224, batch 4, conv layers forward | {c['gflops']:.1f} GFLOP/s "
            f"({c['seconds'] * 1e3:.0f} ms for {2 * c['macs'] / 1e9:.0f} GFLOP) "
            f"| float32 GEMM 2048^3 (numpy): {r['gemm']['gflops']:.1f} GFLOP/s "
            f"| {r['ratio'] * 100:.0f} % of GEMM | >= {r['target'] * 100:.0f} % | {mark(r['met'])} |"
        )
    if "startup" in results:
        r = results["startup"]
        for label, run in (("first ever (empty numba cache)", r["first"]), (f"cached (median of {len(r['cached_runs'])} later runs)", r["cached"])):
            rows.append(
                f"| start-up `cnnlang run resnet18 --repeat 0`, {label} | {run['wall_s']:.2f} s wall; first forward "
                f"starts {run['ready_s']:.2f} s after `run` begins (`start` line; ~{run['launch_to_first_forward_s']:.2f} s "
                f"after launch), first pass {run['first_pass_ms']:.0f} ms | | | | |"
            )
    return "\n".join(rows)


def cpu_busy(seconds: float = 3.0) -> float | None:
    """The fraction of all CPU time that was busy over ``seconds`` (Linux), None elsewhere."""

    def sample():
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return sum(values), values[3] + values[4]

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError):
        return None
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def breakdown(results: dict) -> str:
    """Where cnnlang's time goes, per op (sums of per-node medians; ms)."""
    lines = []

    def fmt(ops: dict) -> str:
        return ", ".join(f"{op} {s * 1e3:.2f}" for op, s in ops.items() if s * 1e3 >= 0.005)

    if "resnet18" in results and "by_op" in results["resnet18"]["cnnlang"]:
        ops = results["resnet18"]["cnnlang"]["by_op"]["forward"]
        lines.append(f"- ResNet-18 inference, batch 8, forward ms by op: {fmt(ops)} (sum {sum(ops.values()) * 1e3:.1f})")
    if "lenet5" in results and "by_op" in results["lenet5"]["cnnlang"]:
        b = results["lenet5"]["cnnlang"]["by_op"]
        lines.append(f"- LeNet-5 training step, batch 64, forward ms by op: {fmt(b['forward'])} "
                     f"(sum {sum(b['forward'].values()) * 1e3:.2f})")
        lines.append(f"- LeNet-5 training step, backward ms by op: {fmt(b['backward'])} "
                     f"(sum {sum(b['backward'].values()) * 1e3:.2f}); SGD update {b['sgd_update'] * 1e3:.3f}; "
                     f"loss gradient {b['loss_grad'] * 1e3:.3f}")
    if "vgg16" in results:
        layers = results["vgg16"]["cnnlang"]["layers"]
        worst = sorted(layers, key=lambda r: r["forward_gflops"] or 0)[:3]
        lines.append("- VGG-16 slowest conv layers: " + ", ".join(
            f"{r['layer']} {r['forward_gflops']:.0f} GFLOP/s ({r['forward_s'] * 1e3:.1f} ms)" for r in worst))
    return ("cnnlang's time by op:\n" + "\n".join(lines)) if lines else ""


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import numba
        import numpy

        info.update(numpy=numpy.__version__, numba=numba.__version__, numba_threads=numba.config.NUMBA_NUM_THREADS)
    except ImportError:
        pass
    try:
        import importlib.metadata as metadata

        info["torch"] = metadata.version("torch")
    except Exception:  # noqa: BLE001 - torch is optional
        info["torch"] = None
    return info


def command_line(recommended: bool = False) -> str:
    """This run's command: ``env -u ...`` when the slow-BLAS variables are unset (or for
    ``recommended``), else with their values, as they were."""
    script = os.path.relpath(Path(__file__).resolve(), Path.cwd())
    tail = f"python {shlex.join([script, *sys.argv[1:]])}"
    present = [name for name in SLOW_BLAS_VARS if name in os.environ]
    if present and not recommended:
        return " ".join(f"{name}={shlex.quote(os.environ[name])}" for name in present) + " " + tail
    return "env " + " ".join(f"-u {name}" for name in SLOW_BLAS_VARS) + " " + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=CASES, metavar="CASE", help=f"run only these ({', '.join(CASES)})")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0

    slow = [name for name in SLOW_BLAS_VARS if name in os.environ]
    if slow:
        print(
            f"WARNING: {', '.join(f'{n}={os.environ[n]}' for n in slow)} is set; OpenBLAS will use a slow kernel "
            f"and the numbers below are not representative. Run: {command_line(recommended=True)}",
            file=sys.stderr,
        )
    busy = cpu_busy()
    if busy is not None and busy > 0.1:
        print(f"WARNING: the CPUs were {busy:.0%} busy before the benchmark started; other work skews the "
              "numbers (numba's parallel kernels suffer most)", file=sys.stderr)
    cases = args.only or list(CASES)
    needs_torch = any(c in ("resnet18", "lenet5") for c in cases)
    if needs_torch:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print("error: the resnet18 and lenet5 cases need PyTorch (pip install torch)", file=sys.stderr)
            return 2

    results: dict = {}
    for case in cases:
        print(f"running {case} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[case] = RUNNERS[case](args.quick)
        print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    info = machine()
    info["busy_before"] = busy
    info["load_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"Command: `{command_line()}`")
    print(
        f"Machine: {info.get('cpu', '?')}, {info['cpus']} CPUs; numpy {info.get('numpy')}, numba {info.get('numba')} "
        f"({info.get('numba_threads')} threads), torch {info.get('torch')} ({TORCH_THREADS} threads)"
        + (f"; WARNING: {', '.join(slow)} set" if slow else "")
    )
    if busy is not None:
        load = info["load_after"]
        print(f"CPU busy before: {busy:.0%}" + (f"; load average after: {load[0]:.2f}" if load else ""))
    print()
    print(table(results))
    extra = breakdown(results)
    if extra:
        print()
        print(extra)
    if args.json:
        payload = {"command": command_line(), "machine": info, "slow_blas_env": slow, "quick": args.quick,
                   "results": results}
        Path(args.json).write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
