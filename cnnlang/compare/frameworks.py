"""One model timed in another framework: PyTorch (the twin module, both memory layouts) and ONNX
Runtime (cnnlang's ONNX export). Each function imports its framework; :mod:`.worker` calls them in
a process of their own. The input, labels and weights are those ``cnnlang bench`` uses for the
same seed, and the training step is the same: forward, cross-entropy (half the mean square for an
output that is not a score vector), backward and a plain SGD update."""

from __future__ import annotations

import numpy as np

from .timing import median_seconds

TRAIN_LR = 0.01  # as cnnlang.cli.bench's step
# Every framework's median is of at least this many seconds of timed calls: the median of three
# LeNet-5 steps of 5 ms swung 2x between one measurement and the next on a shared 2-core VM.
MEASURE_AT_LEAST_S = 0.5
WARMUP_CALLS = 2


def _median(call, repeat: int) -> float:
    """Every framework's timing: the median of ``repeat`` calls or more, over MEASURE_AT_LEAST_S
    seconds at least, after WARMUP_CALLS untimed ones."""
    return median_seconds(call, repeat, warmup=WARMUP_CALLS, at_least_s=MEASURE_AT_LEAST_S)


def bench_input(model, batch: int, seed: int) -> np.ndarray:
    """The batch ``cnnlang bench`` feeds the model (float32)."""
    return np.random.default_rng(seed).standard_normal((batch, *model.input_shape)).astype(np.float32)


def bench_labels(model, batch: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(model.output_shape[0], size=batch)


def torch_seconds(model, batch: int, *, train: bool, repeat: int, seed: int, threads: int) -> dict:
    """Median seconds per inference batch (``torch.inference_mode``) or per training step, in
    NCHW and in channels-last memory format: ``{"layouts": {layout: s}, "best": layout, "seconds": s}``."""
    import torch
    import torch.nn.functional as F

    from .torch_graph import to_input, to_torch

    torch.set_num_threads(threads)
    net = model.build(seed=seed, dtype="float32")
    x = bench_input(model, batch, seed)
    labels = torch.from_numpy(bench_labels(model, batch, seed))
    layouts = {}
    for layout, channels_last in (("NCHW", False), ("channels-last", True)):
        twin = to_torch(model, net, channels_last=channels_last).train(train)
        xt = to_input(x, channels_last)
        params = [p for p in twin.parameters() if p.requires_grad]

        def infer():
            with torch.inference_mode():
                twin(xt)

        def step():
            for p in params:
                p.grad = None
            y = twin(xt)
            loss = F.cross_entropy(y, labels) if y.dim() == 2 else y.square().mean() / 2
            loss.backward()
            with torch.no_grad():
                for p in params:
                    p.sub_(p.grad, alpha=TRAIN_LR)

        layouts[layout] = _median(step if train else infer, repeat)
    best = min(layouts, key=layouts.get)
    return {"version": torch.__version__, "threads": torch.get_num_threads(), "layouts": layouts, "best": best,
            "seconds": layouts[best]}


def onnxruntime_session(model, *, seed: int, threads: int, profile_prefix: str | None = None):
    """An ONNX Runtime session on cnnlang's ONNX export of ``model`` with the seeded weights (the
    graph as written: ONNX Runtime applies its own optimisations, all levels), ``threads``
    intra-op threads, any batch size; with ``profile_prefix``, ONNX Runtime's own per-node profile
    is on and goes to a file whose name starts so."""
    import onnxruntime as ort

    from ..interchange.export import export_model

    proto = export_model(model, seed=seed, dynamic_batch=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def onnxruntime_seconds(model, batch: int, *, repeat: int, seed: int, threads: int) -> dict:
    """Median seconds per inference batch in :func:`onnxruntime_session`."""
    import onnxruntime as ort

    session = onnxruntime_session(model, seed=seed, threads=threads)
    feed = {session.get_inputs()[0].name: bench_input(model, batch, seed)}
    seconds = _median(lambda: session.run(None, feed), repeat)
    return {"version": ort.__version__, "threads": threads, "seconds": seconds}


def onnxruntime_op_seconds(model, batch: int, *, op: str, repeat: int, seed: int, threads: int) -> dict:
    """Median seconds per inference batch that ONNX Runtime's own profile gives the nodes running
    ``op`` (an ONNX op type such as ``Conv``; their times summed per run), timed as
    :func:`onnxruntime_seconds` times the whole run. Why: for a one-layer network the whole run
    also holds the layout changes ONNX Runtime adds around the layer (to and from its blocked NCHWc
    layout), which a whole network pays once; this is the layer's own time, as cnnlang's per-layer
    timings give it."""
    import json
    import tempfile
    from pathlib import Path

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="cnnlang-ort-profile-") as folder:
        session = onnxruntime_session(model, seed=seed, threads=threads, profile_prefix=str(Path(folder) / "profile"))
        feed = {session.get_inputs()[0].name: bench_input(model, batch, seed)}
        runs = 0

        def run():
            nonlocal runs
            session.run(None, feed)
            runs += 1

        _median(run, repeat)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = {}
    ran = set()
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        ran.add(event["args"]["op_name"])
        if event["args"]["op_name"] == op:
            per_node.setdefault(event["name"], []).append(event["dur"] * 1e-6)  # the profile's unit is the microsecond
    if not per_node:
        raise ValueError(f"ONNX Runtime ran no {op} node; it ran {', '.join(sorted(ran)) or 'nothing'}")
    timed = runs - WARMUP_CALLS  # the profile holds the warm-up runs too
    per_run = [sum(run) for run in zip(*(durations[-timed:] for durations in per_node.values()))]
    return {"version": ort.__version__, "threads": threads, "op": op, "nodes": len(per_node),
            "seconds": float(np.median(per_run))}


def cnnlang_seconds(model, batch: int, *, train: bool, repeat: int, seed: int, passes: str = "all") -> dict:
    """cnnlang's own number in the same terms: median seconds per inference batch (with
    ``passes``) or per training step (the graph as written, as training always runs)."""
    from ..train.losses import softmax_cross_entropy

    net = model.build(seed=seed, dtype="float32", passes=None if train else passes)
    x = bench_input(model, batch, seed)
    labels = bench_labels(model, batch, seed)
    if not train:
        net.eval()
        return {"seconds": _median(lambda: net.forward(x), repeat)}
    net.train()
    pairs = [(net.params[name], net.grads[name]) for name in net.trainable]

    def step():
        y = net.forward(x)
        if y.ndim == 2:
            _, dy = softmax_cross_entropy(y, labels)
        else:
            dy = y / y.size
        net.backward(dy)
        for p, g in pairs:
            p -= TRAIN_LR * g

    return {"seconds": _median(step, repeat)}
