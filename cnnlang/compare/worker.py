"""One timing in a fresh interpreter, so that no two frameworks' thread pools share a process:

    python -m cnnlang.compare.worker '{"framework": "torch", "model": "lenet5", "batch": 64, ...}'

prints one JSON line (:mod:`.frameworks` says what is timed). :func:`time_in_subprocess` runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ..environment import SETTINGS

FRAMEWORKS = ("cnnlang", "torch", "onnxruntime")


def time_in_subprocess(framework: str, model: str, *, input_shape=None, batch: int, train: bool = False,
                       repeat: int, seed: int = 0, threads: int, op: str | None = None) -> dict:
    """Median seconds of ``model`` (a zoo name, a .cnn path or a network's source) in
    ``framework``, on ``threads`` threads, timed by a child process: ``{"seconds": ..., ...}``.
    ``op`` (ONNX Runtime only): the time its profile gives that op's nodes instead of the whole run
    (:func:`.frameworks.onnxruntime_op_seconds`)."""
    if op is not None and framework != "onnxruntime":
        raise ValueError(f"an op's own time comes from ONNX Runtime's profile, not from {framework}")
    request = {"framework": framework, "model": str(model), "input": list(input_shape) if input_shape else None,
               "batch": batch, "train": train, "repeat": repeat, "seed": seed, "threads": threads, "op": op}
    env = dict(os.environ, **{f"{pool}_NUM_THREADS": str(threads) for pool in ("OMP", "NUMBA", "OPENBLAS")})
    for name, value in SETTINGS.items():
        # cnnlang runs with its thread settings (cnnlang/environment.py: read before NumPy loads,
        # so set here), the other frameworks with their own defaults.
        if framework == "cnnlang":
            env.setdefault(name, value)
        elif env.get(name) == value:
            del env[name]
    done = subprocess.run([sys.executable, "-m", "cnnlang.compare.worker", json.dumps(request)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"timing {model} in {framework} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(request: dict) -> dict:
    framework = request["framework"]
    from ..model import load
    from . import frameworks

    model = load(request["model"], input_shape=tuple(request["input"]) if request["input"] else None)
    common = {"repeat": request["repeat"], "seed": request["seed"]}
    if framework == "cnnlang":
        return frameworks.cnnlang_seconds(model, request["batch"], train=request["train"], **common)
    if framework == "torch":
        return frameworks.torch_seconds(model, request["batch"], train=request["train"], threads=request["threads"], **common)
    if request["train"]:
        raise ValueError("ONNX Runtime times inference only")
    if request.get("op"):
        return frameworks.onnxruntime_op_seconds(model, request["batch"], op=request["op"], threads=request["threads"],
                                                 **common)
    return frameworks.onnxruntime_seconds(model, request["batch"], threads=request["threads"], **common)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
