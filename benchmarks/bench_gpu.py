"""cnnlang on the GPU against PyTorch on the same GPU, and against cnnlang's own CPU (issue 13).

    python benchmarks/bench_gpu.py [--cases CASE,...] [--gemm auto,numba] [--budget SECONDS] [--json FILE]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/bench_gpu.py --tiny    # a dry run of every code path

Cases, float32, random inputs and labels, the batch uploaded from the host every step (as
training does) and the output or the step's sums brought back:

- ``resnet50-infer``: ResNet-50, 3x224x224, batch 32, inference with all optimisation passes
  (cnnlang) / ``inference_mode`` (PyTorch); target >= 0.5x PyTorch with TF32 off.
- ``resnet18-train``: ResNet-18, batch 32, one training step: forward in training mode, softmax
  cross-entropy on the device, backward, SGD (momentum 0.9, weight decay 5e-4 off biases and
  batchnorm) -- the calls ``cnnlang train`` makes; target >= 0.4x PyTorch with TF32 off.
- ``lenet5-train``: LeNet-5 (1x32x32), batch 256, the same step; target >= 1x PyTorch.
- every case >= 20x cnnlang on the CPU with 2 threads pinned to 2 cores (the issue's 2-core
  machine): the median of 2 steps after 1, at batch 8 for the 224x224 cases (images/s barely
  depends on the batch there).

PyTorch runs the same architectures with the same initial weights (``torch_reference.to_torch``),
twice: with TF32 off (``torch.backends.cudnn.allow_tf32 = False``,
``torch.backends.cuda.matmul.allow_tf32 = False``: float32 arithmetic, as cnnlang does) and with
PyTorch's defaults (cuDNN may use TF32). cnnlang runs once per ``--gemm`` policy (CNNLANG_GEMM:
``auto`` takes cuBLAS through CuPy where it can, ``numba`` the tiled numba.cuda GEMM), and reports
per-layer times from ``cnnlang bench``'s ``measure`` (synchronised per layer) beside MACs and
TFLOP/s. Images/s is the median over ``--rounds`` rounds of ``--steps`` steps after warm-up,
wall time with the device synchronised. Each framework and policy runs in its own subprocess;
``--budget`` shares the time among them and reports what finished in time. The last line says
PASS or FAIL: every target met or not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LR, MOMENTUM, DECAY = 0.01, 0.9, 5e-4
CPU_THREADS = 2


@dataclass(frozen=True)
class Case:
    model: str  # a zoo name or a .cnn file
    batch: int
    train: bool
    target: float  # the least cnnlang / PyTorch (TF32 off) the issue asks for
    cpu_batch: int | None = None  # None: the case's batch


CASES = {
    "resnet50-infer": Case("resnet50", 32, False, 0.5, cpu_batch=8),
    "resnet18-train": Case("resnet18", 32, True, 0.4, cpu_batch=8),
    "lenet5-train": Case("lenet5", 256, True, 1.0),
}
# --tiny: the same code paths on a model the simulator runs in seconds.
MICRO = "network micro {\n    input 1x6x6\n    conv(2, 3x3) -> relu\n    flatten\n    fc(3)\n}\n"
TINY_CASES = {"micro-infer": Case("micro", 2, False, 0.5), "micro-train": Case("micro", 2, True, 1.0)}


def model_source(case: Case, tiny: bool) -> str:
    if not tiny:
        return case.model
    path = Path(tempfile.gettempdir()) / "cnnlang-bench-gpu-micro.cnn"
    path.write_text(MICRO)
    return str(path)


def images_per_second(step, sync, batch: int, steps: int, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        step()
    sync()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync()
        seconds.append((time.perf_counter() - start) / steps)
    median = statistics.median(seconds)
    return {"images_per_s": batch / median, "ms_per_step": median * 1e3, "rounds_ms": [s * 1e3 for s in seconds]}


def random_batch(model, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    return x, rng.integers(0, model.output_shape[0], batch)


# ---- workers: each runs in its own process and prints JSON lines ---------------------------------


def report(result: dict) -> None:
    """A worker's result, one JSON line as soon as it is known: a worker stopped at the
    --budget still gives what it measured."""
    print(json.dumps(result), flush=True)


def worker_cnnlang(names: list[str], device: str, args) -> None:
    from cnnlang.runtime.backend import get_backend

    backend = get_backend(device)
    if device == "cuda":
        from numba import cuda

        name = getattr(cuda.get_current_device(), "name", "Numba's CUDA simulator")
        report({"gpu": name.decode() if isinstance(name, bytes) else str(name)})
    for name in names:
        try:
            report({name: measure_cnnlang((TINY_CASES if args.tiny else CASES)[name], backend, args)})
        except Exception as error:  # noqa: BLE001 - one case's failure is reported, the others still run
            report({name: {"error": f"{type(error).__name__}: {error}"}})


def measure_cnnlang(case: Case, backend, args) -> dict:
    import cnnlang
    from cnnlang.cli.bench import measure
    from cnnlang.passes.optimise import PASS_NAMES
    from cnnlang.train.losses import CrossEntropy
    from cnnlang.train.optim import make_optimizer

    cpu = backend.name == "cpu"
    batch = (case.cpu_batch or case.batch) if cpu else case.batch
    model = cnnlang.load(model_source(case, args.tiny))
    x, y = random_batch(model, batch)
    if case.train:
        net = model.build(seed=0, backend=backend).train()
        loss = CrossEntropy(backend)
        no_decay = [n for n in net.trainable if net.params[n].ndim == 1]
        sgd = make_optimizer("sgd", net.device_params, net.grads, net.trainable, lr=LR, momentum=MOMENTUM,
                             weight_decay=DECAY, nesterov=False, no_decay=no_decay, backend=backend)

        def step():
            net.backward(loss(net.forward(x, on_backend=True), y).grad)
            sgd.step()
    else:
        net = model.build(seed=0, passes="all", backend=backend).eval()

        def step():
            net.forward(x)

    # The CPU is only the 20x reference: a few slow steps do.
    result = images_per_second(step, backend.synchronize, batch, 1 if cpu else args.steps, 2 if cpu else args.rounds,
                               1 if cpu else args.warmup)
    result["batch"] = batch
    if not cpu:
        from cnnlang.runtime.kernels.cuda.gemm import gemm_record, reset_gemm_record

        reset_gemm_record()
        measured = measure(model, batch, case.train, args.layer_repeats, 0, "float32",
                           None if case.train else list(PASS_NAMES), backend)
        result["layers"] = measured.get("layers", [])
        result["gemm_calls"] = gemm_record()  # of the per-layer measurement
    return result


def worker_torch(names: list[str], args) -> None:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: the dry run only
    report({"device": device, "torch": torch.__version__})
    defaults = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    for setting, (cudnn_tf32, matmul_tf32) in (("tf32-off", (False, False)), ("default", defaults)):
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        for name in names:
            try:
                result = measure_torch((TINY_CASES if args.tiny else CASES)[name], device, args)
            except Exception as error:  # noqa: BLE001 - as in worker_cnnlang
                result = {"error": f"{type(error).__name__}: {error}"}
            report({setting: {name: result}})


def measure_torch(case: Case, device: str, args) -> dict:
    import torch
    import torch.nn.functional as F

    import cnnlang
    from torch_reference import to_torch

    model = cnnlang.load(model_source(case, args.tiny))
    twin = to_torch(model, model.build(seed=0), dtype=torch.float32).to(device)
    x, y = (torch.from_numpy(a) for a in random_batch(model, case.batch))
    if case.train:
        twin.train()
        decay = [p for p in twin.parameters() if p.ndim > 1]
        rest = [p for p in twin.parameters() if p.ndim <= 1]
        sgd = torch.optim.SGD([{"params": decay, "weight_decay": DECAY}, {"params": rest, "weight_decay": 0.0}],
                              lr=LR, momentum=MOMENTUM)

        def step():
            loss = F.cross_entropy(twin(x.to(device)), y.to(device))
            sgd.zero_grad(set_to_none=True)
            loss.backward()
            sgd.step()
            loss.item()  # the scalar comes back, as cnnlang's step brings back its sums
    else:
        twin.eval()

        def step():
            with torch.inference_mode():
                twin(x.to(device)).cpu()

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return images_per_second(step, sync, case.batch, args.steps, args.rounds, args.warmup)


def run_worker(kind: str, args, env_changes: dict[str, str] | None = None, share: float = 1.0) -> dict:
    """What the worker reported, merged; with {"error": ...} where it failed or ran past its
    ``share`` of what is left of --budget."""
    from cnnlang.environment import SETTINGS

    command = [sys.executable, __file__, "--worker", kind, "--cases", ",".join(args.case_names),
               "--steps", str(args.steps), "--rounds", str(args.rounds), "--warmup", str(args.warmup),
               "--layer-repeats", str(args.layer_repeats)] + (["--tiny"] if args.tiny else [])
    env = {**SETTINGS, **os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           **(env_changes or {})}
    left = None if args.deadline is None else (args.deadline - time.monotonic()) * share
    if left is not None and left < 5:
        return {"error": "not run: the --budget was spent"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=left)
        output, error = done.stdout, (None if done.returncode == 0 else
                                      (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1])
    except subprocess.TimeoutExpired as stopped:
        output = stopped.stdout.decode() if isinstance(stopped.stdout, bytes) else stopped.stdout or ""
        error = f"stopped after {left:.0f} s, its share of the --budget"
    results: dict = {}
    for line in output.splitlines():
        if line.startswith("{"):
            for key, value in json.loads(line).items():
                results[key] = {**results[key], **value} if isinstance(value, dict) and key in results else value
    for name in args.case_names:  # a case the worker never reached
        if error and kind != "torch" and name not in results:
            results[name] = {"error": error}
    if error and (kind == "torch" or not any(name in results for name in args.case_names)):
        results["error"] = error
    return results


def cpu_environment() -> dict[str, str]:
    """The CPU worker's thread settings: the issue's 2-core machine (its cores pinned in the worker)."""
    return {name: str(CPU_THREADS) for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                 "MKL_NUM_THREADS")} | {"NUMBA_ENABLE_CUDASIM": "0"}


# ---- the report ---------------------------------------------------------------------------------


def summarise(results: dict, args) -> tuple[list[str], list[str]]:
    """The table's lines, and the targets the first GEMM policy misses."""
    cases = TINY_CASES if args.tiny else CASES
    torch = results.get("torch", {})
    cpu = results.get("cnnlang-cpu", {})
    lines, missed = [], []
    for policy in args.gemm:
        ours = results.get(f"cnnlang-cuda-{policy}", {})
        first = policy == args.gemm[0]
        if "error" in ours:
            lines.append(f"cnnlang cuda (gemm {policy}) failed: {ours['error']}")
            missed += [f"cnnlang cuda (gemm {policy}) failed"] if first else []
            continue
        for name, case in cases.items():
            if name not in ours:
                continue
            if "error" in ours[name]:
                lines.append(f"{name:>15} gemm {policy:<6} failed: {ours[name]['error']}")
                missed += [f"{name} failed"] if first else []
                continue
            speed = ours[name]["images_per_s"]
            off = torch.get("tf32-off", {}).get(name, {}).get("images_per_s")
            default = torch.get("default", {}).get(name, {}).get("images_per_s")
            slow = cpu.get(name, {}).get("images_per_s")
            missed += [f"{name}: no PyTorch number"] if first and not off else []
            missed += [f"{name}: no CPU number"] if first and not slow and not args.no_cpu else []
            ratio = speed / off if off else None
            line = f"{name:>15} gemm {policy:<6} cnnlang {speed:10,.1f} img/s"
            if off:
                line += f" | PyTorch TF32 off {off:10,.1f} -> {ratio:.2f}x (target {case.target}x: {'met' if ratio >= case.target else 'NOT met'})"
                missed += [f"{name} {ratio:.2f}x PyTorch < {case.target}x"] if first and ratio < case.target else []
            if default:
                line += f" | PyTorch default {default:10,.1f} -> {speed / default:.2f}x"
            if slow:
                line += f" | cnnlang CPU {CPU_THREADS} threads {slow:8,.1f} -> {speed / slow:.1f}x (target 20x: {'met' if speed / slow >= 20 else 'NOT met'})"
                missed += [f"{name} {speed / slow:.1f}x CPU < 20x"] if first and speed / slow < 20 else []
            lines.append(line)
    for kind in ("torch", "cnnlang-cpu"):
        if "error" in results.get(kind, {}):
            lines.append(f"{kind} failed: {results[kind]['error']}")
            missed.append(f"{kind} failed")
    return lines, missed


def failures(results: dict, where: str = "") -> list[str]:
    """Every error a worker or a case reported, named by where it happened."""
    if "error" in results:
        return [f"{where}: {results['error']}"]
    return [failure for key, value in results.items() if isinstance(value, dict)
            for failure in failures(value, f"{where} {key}".strip())]


def layer_table(name: str, measured: dict, top: int = 12) -> list[str]:
    layers = sorted(measured.get("layers", []), key=lambda r: -(r["forward_s"] + r.get("backward_s", 0.0)))[:top]
    lines = [f"{name}: the {len(layers)} slowest layers (forward [+ backward]), ms, MACs, TFLOP/s"]
    for row in layers:
        forward = f"{row['forward_s'] * 1e3:8.3f} ms {2 * row['macs'] / row['forward_s'] / 1e12 if row['macs'] and row['forward_s'] > 0 else 0:6.2f} TF/s"
        backward = ""
        if "backward_s" in row:
            back = row["backward_s"]
            backward = f" | back {back * 1e3:8.3f} ms {4 * row['macs'] / back / 1e12 if row['macs'] and back > 0 else 0:6.2f} TF/s"
        lines.append(f"  {row['layer']:<28} {row['op'] + ''.join('+' + f for f in row['fused']):<22} {row['macs']:>14,} {forward}{backward}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", help="comma-separated, of: " + ", ".join(CASES))
    parser.add_argument("--gemm", default="auto,numba", help="CNNLANG_GEMM policies to run cnnlang with (default auto,numba)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--layer-repeats", type=int, default=3)
    parser.add_argument("--no-cpu", action="store_true", help="skip cnnlang's CPU measurement")
    parser.add_argument("--budget", type=float, metavar="SECONDS", help="stop measuring after this long (what ran is reported)")
    parser.add_argument("--tiny", action="store_true", help="a micro model at batch 2: check the script, not the speed")
    parser.add_argument("--json", metavar="FILE", help="also write every number to FILE")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.deadline = None
    cases = TINY_CASES if args.tiny else CASES
    args.case_names = args.cases.split(",") if args.cases else list(cases)
    unknown = [name for name in args.case_names if name not in cases]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; the cases are {', '.join(cases)}")
    args.gemm = args.gemm.split(",")
    if args.tiny:
        args.steps, args.rounds, args.warmup, args.layer_repeats = 1, 1, 1, 1

    if args.worker:
        if args.worker == "torch":
            worker_torch(args.case_names, args)
        else:
            if args.worker == "cnnlang-cpu" and hasattr(os, "sched_setaffinity"):
                os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:CPU_THREADS])
            worker_cnnlang(args.case_names, "cpu" if args.worker == "cnnlang-cpu" else "cuda", args)
        return

    results: dict = {"cases": {name: cases[name].__dict__ for name in args.case_names}}
    args.deadline = None if args.budget is None else time.monotonic() + args.budget
    # The most important first: what a --budget cuts is the second GEMM policy.
    print(f"cnnlang on cuda, CNNLANG_GEMM={args.gemm[0]} ...", flush=True)
    results[f"cnnlang-cuda-{args.gemm[0]}"] = run_worker("cnnlang-cuda", args, {"CNNLANG_GEMM": args.gemm[0]}, 0.45)
    print("PyTorch (TF32 off, then default) ...", flush=True)
    results["torch"] = run_worker("torch", args, share=0.4)
    if not args.no_cpu:
        print(f"cnnlang on the CPU, {CPU_THREADS} threads ...", flush=True)
        results["cnnlang-cpu"] = run_worker("cnnlang-cpu", args, cpu_environment(), 0.6)
    for policy in args.gemm[1:]:
        print(f"cnnlang on cuda, CNNLANG_GEMM={policy} ...", flush=True)
        results[f"cnnlang-cuda-{policy}"] = run_worker("cnnlang-cuda", args, {"CNNLANG_GEMM": policy})
    summary, missed = summarise(results, args)
    lines = list(summary)
    for policy in args.gemm:
        for name, measured in results.get(f"cnnlang-cuda-{policy}", {}).items():
            if isinstance(measured, dict) and "layers" in measured:
                lines += layer_table(f"{name} (gemm {policy}; GEMM calls {measured.get('gemm_calls')})", measured)
    print("\n".join(lines + summary))  # the ratios again, last, where a log's tail shows them
    if args.tiny:
        failed = failures(results)
        print(f"FAIL bench: {'; '.join(failed)}" if failed else
              "PASS bench: the dry run went through every step (a micro model: no targets)")
    else:
        print(f"{'FAIL' if missed else 'PASS'} bench (gemm {args.gemm[0]}): " + ("; ".join(missed) if missed else "every target met"))
    if args.json:
        Path(args.json).write_text(json.dumps({**results, "summary": summary, "missed": missed}, indent=2) + "\n")


if __name__ == "__main__":
    main()
