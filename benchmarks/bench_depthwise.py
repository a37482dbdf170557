"""Depthwise convolution and MobileNet v1 against PyTorch (CPU, float32, 2 threads each by default).

    python benchmarks/bench_depthwise.py [--batch 8] [--rounds 7] [--reps 5] [--threads 2] [--only CASE ...]

Cases:

- ``dw_forward``: one depthwise layer, 64 channels, 56x56, 3x3, pad 1, no bias, batch 8:
  cnnlang's kernel (runtime/kernels/cpu/depthwise.py) against ``F.conv2d(groups=64)``.
- ``dw_train``: the same layer's forward and backward (dx and dW).
- ``mobilenet_infer``: zoo/mobilenet_v1.cnn, 3x224x224, inference: cnnlang with all
  optimisation passes (batchnorm folded, relu fused) against the torch twin in eval mode.
- ``mobilenet_train``: one training step: forward in training mode, softmax cross-entropy
  gradient, backward, SGD ``p -= lr * g`` on every parameter.

``--threads`` sets both frameworks' threads (2 by default). PyTorch runs in NCHW and
channels-last; for MobileNet also with symmetric padding 1 instead of the model's
TensorFlow-style (0, 1) on its five stride-2 convolutions (same output sizes; the twin runs that
padding as ``F.pad`` + conv, a copy a PyTorch user would not write). The fastest of these
variants is the reference, and named.

Each framework runs in its own worker process (their thread pools never share one), both kept
alive and asked in turn, case by case, for ``--reps`` timed runs after a warm-up: rounds
interleave, so load from other processes hits both alike. Reported: per framework the median of
all its timings, and the median over rounds of the per-round ratio PyTorch time / cnnlang time
(> 1: cnnlang is faster).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("dw_forward", "dw_train", "mobilenet_infer", "mobilenet_train")
LAYER = (64, 56, 56)  # channels, height, width of the depthwise layer cases
LR = 0.01


def softmax_xent_grad(logits, labels):
    import numpy as np

    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    grad = e / e.sum(axis=1, keepdims=True)
    grad[np.arange(len(labels)), labels] -= 1.0
    return grad / len(labels)


# ---- workers: each returns {case: run()} for one framework -------------------------------------


def cnnlang_cases(batch: int) -> dict:
    import numpy as np

    import cnnlang
    from cnnlang.runtime.kernels.cpu.depthwise import depthwise_backward, depthwise_forward

    rng = np.random.default_rng(0)
    c, h, w = LAYER
    x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
    weight = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
    out = np.empty_like(x)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dweight = np.empty_like(x), np.empty_like(weight)
    geometry = ((1, 1), ((1, 1), (1, 1)), (1, 1))

    def dw_forward():
        depthwise_forward(x, weight, None, *geometry, out)

    def dw_train():
        depthwise_forward(x, weight, None, *geometry, out)
        depthwise_backward(x, weight, dy, *geometry, dx, dweight, None)

    model = cnnlang.load("mobilenet_v1")
    images = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    labels = rng.integers(0, model.output_shape[0], batch)
    inference = model.build(seed=0, dtype="float32", passes="all").eval()
    training = model.build(seed=0, dtype="float32").train()
    params = [(training.params[n], training.grads[n]) for n in training.trainable]

    def mobilenet_infer():
        inference.forward(images)

    def mobilenet_train():
        y = training.forward(images)
        training.backward(softmax_xent_grad(y, labels))
        for p, g in params:
            p -= LR * g

    return {"dw_forward": dw_forward, "dw_train": dw_train, "mobilenet_infer": mobilenet_infer,
            "mobilenet_train": mobilenet_train}  # fmt: skip


def torch_cases(batch: int, threads: int) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    import cnnlang
    from cnnlang.layers.torch_twins import PaddedConv
    from torch_reference import to_input, to_torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    c, h, w = LAYER
    cases = {}
    for layout, memory in (("NCHW", torch.contiguous_format), ("channels_last", torch.channels_last)):
        x = torch.from_numpy(rng.standard_normal((batch, c, h, w)).astype(np.float32)).contiguous(memory_format=memory)
        weight = torch.randn(c, 1, 3, 3).contiguous(memory_format=memory)
        dy = torch.randn(batch, c, h, w).contiguous(memory_format=memory)

        def dw_forward(x=x, weight=weight):
            with torch.inference_mode():
                F.conv2d(x, weight, None, 1, 1, 1, c)

        def dw_train(x=x.clone().requires_grad_(), weight=weight.clone().requires_grad_(), dy=dy):
            x.grad = weight.grad = None
            F.conv2d(x, weight, None, 1, 1, 1, c).backward(dy)

        cases[f"dw_forward/{layout}"] = dw_forward
        cases[f"dw_train/{layout}"] = dw_train

    model = cnnlang.load("mobilenet_v1")
    net = model.build(seed=0, dtype="float32")
    images = rng.standard_normal((batch, *model.input_shape)).astype(np.float32)
    labels = torch.from_numpy(rng.integers(0, model.output_shape[0], batch))
    for padding in ("twin", "symmetric"):
        for layout, channels_last in (("NCHW", False), ("channels_last", True)):
            twin = to_torch(model, net, channels_last=channels_last)
            if padding == "symmetric":
                symmetric_padding(twin, PaddedConv)
            xt = to_input(images, channels_last)
            inference = to_torch(model, net, channels_last=channels_last).eval()
            if padding == "symmetric":
                symmetric_padding(inference, PaddedConv)
            params = [p for p in twin.parameters() if p.requires_grad]

            def mobilenet_infer(net=inference, xt=xt):
                with torch.inference_mode():
                    net(xt)

            def mobilenet_train(net=twin.train(), xt=xt, params=params):
                for p in params:
                    p.grad = None
                F.cross_entropy(net(xt), labels).backward()
                with torch.no_grad():
                    for p in params:
                        p.sub_(p.grad, alpha=LR)

            cases[f"mobilenet_infer/{layout}, {padding} padding"] = mobilenet_infer
            cases[f"mobilenet_train/{layout}, {padding} padding"] = mobilenet_train
    return cases


def symmetric_padding(module, padded_conv) -> None:
    """Replace each ``F.pad`` + conv of the twin by the conv with padding 1 on every side."""
    for name, child in module.named_children():
        if isinstance(child, padded_conv):
            child.conv.padding = (1, 1)
            setattr(module, name, child.conv)
        else:
            symmetric_padding(child, padded_conv)


def worker(framework: str, batch: int, reps: int, threads: int) -> None:
    """Answer each case name read from stdin with one JSON line: {variant: [seconds] * reps}."""
    if framework == "cnnlang":
        import numba

        numba.set_num_threads(threads)
    cases = cnnlang_cases(batch) if framework == "cnnlang" else torch_cases(batch, threads)
    warm: set[str] = set()
    print(json.dumps(sorted(cases)), flush=True)
    for line in sys.stdin:
        case = line.strip()
        result = {}
        for name, run in cases.items():
            if name.split("/")[0] != case:
                continue
            for _ in range(0 if name in warm else 2):
                run()
            warm.add(name)
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            result[name] = times
        print(json.dumps(result), flush=True)


# ---- the driver ----------------------------------------------------------------------------------


def start_worker(framework: str, args) -> subprocess.Popen:
    from cnnlang.environment import SETTINGS

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    if framework == "cnnlang":
        # cnnlang's thread settings, as its CLI sets them, and NumPy's BLAS on --threads threads
        env = {**SETTINGS, **env, "OPENBLAS_NUM_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, __file__, "--worker", framework, "--batch", str(args.batch), "--reps", str(args.reps),
               "--threads", str(args.threads)]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    if not process.stdout.readline():
        raise SystemExit(f"the {framework} worker failed to start")
    return process


def ask(process: subprocess.Popen, case: str) -> dict:
    process.stdin.write(case + "\n")
    process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"a worker died during {case}")
    return json.loads(line)


def machine() -> str:
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        flags = "AVX-512" if " avx512f" in text else "AVX2" if " avx2" in text else "no AVX2"
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {flags}, {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case")
    parser.add_argument("--reps", type=int, default=5, help="timed runs per round")
    parser.add_argument("--threads", type=int, default=2, help="threads of each framework")
    parser.add_argument("--only", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--worker", choices=("cnnlang", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batch, args.reps, args.threads)
        return
    workers = {name: start_worker(name, args) for name in ("cnnlang", "torch")}
    print(f"{machine()}; float32, {args.threads} threads each, batch {args.batch}; {args.rounds} rounds x {args.reps} runs")
    print(f"{'case':<18}{'cnnlang ms':>12}{'PyTorch ms':>12}  {'ratio':>6}  PyTorch variant (fastest)")
    try:
        for case in args.only:
            ours: list[float] = []
            theirs: dict[str, list[float]] = {}
            ratios = []
            for _ in range(args.rounds):
                mine = ask(workers["cnnlang"], case)[case]
                other = ask(workers["torch"], case)
                for variant, times in other.items():
                    theirs.setdefault(variant, []).extend(times)
                ours.extend(mine)
                best_round = min(statistics.median(times) for times in other.values())
                ratios.append(best_round / statistics.median(mine))
            best = min(theirs, key=lambda v: statistics.median(theirs[v]))
            print(f"{case:<18}{statistics.median(ours) * 1e3:12.2f}{statistics.median(theirs[best]) * 1e3:12.2f}  "
                  f"{statistics.median(ratios):5.2f}x  {best.split('/', 1)[1]}", flush=True)  # fmt: skip
    finally:
        for process in workers.values():
            process.stdin.close()
            process.wait()


if __name__ == "__main__":
    main()
