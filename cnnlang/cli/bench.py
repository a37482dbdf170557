"""``cnnlang bench MODEL``: measured speed beside the static cost model, per layer.

Images per second for inference with the optimisation passes (all by default) and without them (the
two networks timed in turns), with the activation memory each allocates and the speed-up; for a
training step (forward in training mode, backward, and a plain SGD update) on the graph as written:
no optimisation passes, but on the CPU each relu after a batchnorm or a residual add runs inside it,
and a residual add inside the batchnorm before it, as in all training and in inference without
passes (cnnlang/passes/fuse_training.py), which the output says; then one row per layer with its
MACs, measured time and the GFLOP/s that implies (2 FLOPs per MAC; backward counts twice the forward
MACs), also as a share of the machine's GEMM rate (a NumPy matmul timed in the same run).
``--compare torch,onnxruntime`` times the same model in those frameworks too (``cnnlang.compare``)
and prints the speed ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from ..compare import parse_references
from ..compare.timing import alternating_medians, gemm_gflops, median_seconds
from ..errors import UsageError
from ..model import Model
from ..passes.optimise import PASS_NAMES
from ..train.optim import make_optimizer
from .common import add_device_option, add_model_argument, add_pass_options, device_backend, load_model, selected_passes, table_console


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "bench", help="measure images/s and per-layer time against MACs",
        description="Measure inference (and with --train, training-step) speed, and show each layer's measured "
        "time beside its MAC count and the GFLOP/s achieved.",
    )
    add_model_argument(parser)
    parser.add_argument("--batch", type=int, default=8, metavar="N", help="batch size (default 8)")
    parser.add_argument("--train", action="store_true", help="also time a training step and the backward of each layer")
    parser.add_argument("--repeat", type=int, default=5, metavar="R", help="timed runs; the median is reported (default 5)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--compare", metavar="LIST", help="also time the model in these frameworks: 'torch', "
                        "'onnxruntime' or both ('torch,onnxruntime'), on cnnlang's thread count, and print the speed ratios")
    add_device_option(parser)
    add_pass_options(parser, default="all")
    return parser


def measure(model: Model, batch: int, train: bool, repeat: int, seed: int, dtype: str, passes: list[str] | None = None,
            backend=None, timed: bool = True) -> dict:
    """Median timings of whole passes and per-layer sums over ``repeat`` runs (after one warm-up),
    inference with ``passes`` (none by default) and the bytes of activation storage allocated,
    on ``backend`` (default: the CPU). With ``timed`` false the whole inference pass is not timed
    here: ``result["forward"]`` is the call, for the caller to time beside another network's."""
    network = model.build(seed=seed, dtype=dtype, passes=passes, backend=backend)
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape)).astype(network.dtype)
    result: dict = {"model": model.name, "batch": batch, "dtype": dtype, "passes": list(network.passes),
                    "device": network.backend.name}
    if network.inference_plan is None:
        # What the plan of the graph as written runs beyond it (the training step, and inference
        # without passes): relu -> the batchnorm or add it runs inside, add -> the batchnorm it runs inside,
        # activation -> the average pooling after it that computes it (fuse_training, CPU only).
        fused = [s for s in network.plan.steps if s.fused_into is not None]
        result["fused_relus"] = {s.node: s.fused_into for s in fused if s.op.layer.op != "add"}
        result["fused_adds"] = {s.node: s.fused_into for s in fused if s.op.layer.op == "add"}
        result["pooled_activations"] = {s.node: s.pooled_by for s in network.plan.steps if s.pooled_by is not None}
    gemms = _gemm_record(network.backend)

    start = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore"):
        y = network.eval().forward(x)
    result["first_forward_s"] = time.perf_counter() - start
    if not np.isfinite(y).all():
        # Timings of arithmetic on infinities say nothing about the model's speed.
        from ..train.nonfinite import first_nonfinite

        result["nonfinite"] = (first_nonfinite(network) if network.inference_plan is None else None) or "its output"
        return result
    if timed:
        result["inference_s"] = median_seconds(lambda: network.forward(x), repeat)
    else:
        result["forward"] = lambda: network.forward(x)
    forward_layers = _per_layer(lambda t: network.forward(x, timings=t), repeat)
    result["activation_bytes"] = network.activation_bytes(batch)
    result["workspace_bytes"] = (network.inference_plan or network.plan).workspace_bytes()

    backward_layers: dict[str, float] = {}
    if train:
        network.train()
        losses: list[float] = []
        labels = np.random.default_rng(seed).integers(model.output_shape[0], size=batch)
        sgd = make_optimizer("sgd", network.device_params, network.grads, network.trainable, lr=TRAIN_LR, momentum=0.0,
                             weight_decay=0.0, nesterov=False, no_decay=(), backend=network.backend)

        def step(timings=None):
            # Overflow is checked after the steps and reported in words, not as NumPy warnings.
            with np.errstate(over="ignore", invalid="ignore"):
                loss, dy = _loss_and_gradient(network.forward(x), labels)
                network.backward(dy, timings)
                sgd.step()
            losses.append(loss)

        step()
        seconds = median_seconds(step, repeat)
        backward_layers = _per_layer(step, repeat)
        result["train_losses"] = losses
        problem = _nonfinite_training(network, losses)
        if problem:
            result["train_nonfinite"] = problem
            backward_layers = {}
        else:
            result["train_step_s"] = seconds
        network.eval()  # (result["forward"] is inference's)

    graph = network.plan.graph if network.inference_plan is None else network.inference_plan.graph
    layers = []
    for node, seconds in forward_layers.items():
        # a depthwise conv the inference plan streamed into this conv (fuse-depthwise) has no time of its own
        inside = [i for i in graph.predecessors(node)
                  if graph.nodes[i].get("streamed_into") == node and i not in forward_layers]
        macs = (graph.nodes[node]["macs"] + sum(graph.nodes[i]["macs"] for i in inside)) * batch
        fused = []
        for streamed in inside:
            fused += [streamed] + [f["name"] for f in graph.nodes[streamed].get("fused", [])]
        fused += [f["name"] for f in graph.nodes[node].get("fused", [])]
        row = {"layer": node, "op": graph.nodes[node]["op"], "fused": fused, "macs": macs, "forward_s": seconds,
               "forward_gflops": 2 * macs / seconds / 1e9 if macs and seconds > 0 else None}
        if backward_layers:
            back = backward_layers.get(node, 0.0)
            row["backward_s"] = back
            row["backward_gflops"] = 4 * macs / back / 1e9 if macs and back > 0 else None
        layers.append(row)
    result["layers"] = layers
    if gemms is not None:
        result["gemm_calls"] = gemms()  # which GEMM ran (cuBLAS or the numba kernel), by calls
    return result


def _gemm_record(backend):
    """On a GPU: a function giving the GEMM calls by implementation since now; None on the CPU."""
    if backend.shares_host_memory:
        return None
    from ..runtime.kernels.cuda.gemm import gemm_record, reset_gemm_record

    reset_gemm_record()
    return gemm_record


# The timed training step is a real one, so its values must stay sane: cross-entropy against
# fixed random labels (a loss bounded below, unlike the sum of the outputs, which a step then
# drives to overflow) with plain SGD at a small learning rate.
TRAIN_LR = 0.01


def _loss_and_gradient(output: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Cross-entropy for a vector of scores; half the mean square (towards zero) otherwise."""
    from ..train.losses import softmax_cross_entropy

    if output.ndim == 2:
        return softmax_cross_entropy(output, labels)
    return float(np.mean(np.square(output, dtype=np.float64)) / 2), output / output.size


def _nonfinite_training(network, losses: list[float]) -> str | None:
    """A sentence on what went non-finite in the timed training steps; None when nothing did."""
    from ..train.nonfinite import first_nonfinite

    bad = next((i for i, loss in enumerate(losses) if not np.isfinite(loss)), None)
    where = first_nonfinite(network)
    if bad is None and where is None:
        return None
    return (f"the loss became {losses[bad]} at step {bad + 1} of {len(losses)}" if bad is not None
            else "the values went non-finite") + (f": {where}" if where else "")


def _per_layer(run_once, repeat: int) -> dict[str, float]:
    """Median per layer over ``repeat`` timed runs."""
    samples: dict[str, list[float]] = {}
    for _ in range(repeat):
        timings: dict[str, float] = {}
        run_once(timings)
        for node, seconds in timings.items():
            samples.setdefault(node, []).append(seconds)
    return {node: statistics.median(values) for node, values in samples.items()}


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or args.repeat < 1:
        raise UsageError("--batch and --repeat must be at least 1")
    passes = selected_passes(args)
    references = parse_references(args.compare) if args.compare else []
    if references and args.dtype != "float32":
        raise UsageError("--compare times float32 in every framework; leave out --dtype float64")
    if references and args.device != "cpu":
        raise UsageError("--compare times the references on the CPU; leave out --device (benchmarks/bench_gpu.py compares on a GPU)")
    backend = device_backend(args)
    model = load_model(args)
    result = measure(model, args.batch, args.train, args.repeat, args.seed, args.dtype, backend=backend,
                     timed=not passes)
    optimised = measure(model, args.batch, False, args.repeat, args.seed, args.dtype, passes, backend,
                        timed=False) if passes and "nonfinite" not in result else {}
    for measured in (result, optimised):
        if "nonfinite" in measured:
            print(f"cnnlang bench: {model.name}: not timed: the forward pass gives non-finite values "
                  f"({measured['nonfinite']}) on random input with seed {args.seed}", file=sys.stderr)
            return 1
    if passes:
        # With and without passes in turns: timed one after the other, a slow spell of a shared
        # machine made LeNet-5's passes look 0.69x as fast (both networks: 1.3 or 2.1 ms a batch).
        with np.errstate(over="ignore", invalid="ignore"):  # (weights after --train's steps)
            result["inference_s"], optimised["inference_s"] = alternating_medians(
                [result.pop("forward"), optimised.pop("forward")], args.repeat)
        result["optimised"] = {k: v for k, v in optimised.items() if k not in ("model", "batch", "dtype")}
        result["speedup"] = result["inference_s"] / optimised["inference_s"]
    # The share of the GEMM rate is a CPU measure (NumPy's sgemm); on a GPU the per-layer rates stand alone.
    result["gemm_gflops"] = gemm_gflops(args.dtype) if backend.name == "cpu" else None
    for measured in (result, result.get("optimised", {})):
        _add_gemm_share(measured.get("layers", []), result["gemm_gflops"])
    if references:
        result["references"] = _time_references(args, model, result, references)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    console = table_console()
    batch = args.batch
    console.print(f"{model.name} ({model.source}), batch {batch}, {args.dtype}, median of {args.repeat}"
                  + ("" if result["device"] == "cpu" else f", on {result['device']}"))
    rows = [("no passes", result)]
    if passes:
        every = len(passes) == len(PASS_NAMES)
        if not every:
            console.print(f"selected passes: {', '.join(passes)}")
        rows.insert(0, ("all passes" if every else "selected passes", result["optimised"]))
    for label, measured in rows:
        console.print(f"inference {label:<16} {batch / measured['inference_s']:10.1f} images/s  ({measured['inference_s'] * 1000:.2f} ms per batch; "
                      f"first pass {measured['first_forward_s'] * 1000:.0f} ms); activation memory {measured['activation_bytes'] / 1e6:.2f} MB "
                      f"(+ {measured['workspace_bytes'] / 1e6:.2f} MB conv scratch)")
    as_written = _as_written(result["fused_relus"], result["fused_adds"], result["pooled_activations"])
    if result["fused_relus"] or result["fused_adds"] or result["pooled_activations"]:
        console.print("(inference no passes: fuse-training too, as in the training step)")
    if passes:
        saved = 1 - result["optimised"]["activation_bytes"] / result["activation_bytes"]
        console.print(f"speed-up {result['speedup']:.2f}x, activation memory {saved:.0%} less (allocated node outputs: "
                      "one buffer per layer without passes, the planned buffers with them)")
    if args.train and "train_nonfinite" in result:
        console.print(f"training step  not timed: non-finite values ({result['train_nonfinite']})")
    elif args.train:
        console.print(f"training step  {batch / result['train_step_s']:10.1f} images/s  ({result['train_step_s'] * 1000:.2f} ms per batch: "
                      f"forward, backward, SGD update; {as_written})")
    for label, measured in [("no passes", result), *([("with passes", result["optimised"])] if passes else [])]:
        if "gemm_calls" in measured:
            calls = ", ".join(f"{name} {count:,}" for name, count in sorted(measured["gemm_calls"].items())) or "none"
            console.print(f"GEMM calls {label}: {calls}")
    if references:
        from ..compare.summary import reference_lines

        for line in reference_lines(result["references"], _cnnlang_seconds(result)):
            console.print(line)
    gemm = (f"% GEMM: of a {args.dtype} NumPy matmul's {result['gemm_gflops']:.1f} GFLOP/s, measured in this run"
            if result["gemm_gflops"] else "no % GEMM on a GPU")
    if passes and not args.train:
        console.print(f"per layer, with {rows[0][0]} (a layer's time includes the layers fused into it; {gemm}):")
        _layer_table(console, result["optimised"]["layers"], False, result["gemm_gflops"])
    else:
        console.print(f"per layer, {as_written.split(':')[0]} ({gemm}):")
        _layer_table(console, result["layers"], "train_step_s" in result, result["gemm_gflops"])
    return 0


def _as_written(fused_relus: dict[str, str], fused_adds: dict[str, str], pooled: dict[str, str]) -> str:
    """What runs without optimisation passes: the graph as written, with each relu in
    ``fused_relus`` (relu -> its producer, from the CPU plan) run inside the batchnorm or add before it,
    each add in ``fused_adds`` inside the batchnorm before it, and each activation in ``pooled`` (-> its
    pooling) inside the average pooling after it."""
    parts = []
    if fused_relus:
        count = len(fused_relus)
        parts.append(f"{count} relu{'s' if count > 1 else ''} fused into the batchnorm or add before "
                     f"{'them' if count > 1 else 'it'}")
    if fused_adds:
        count = len(fused_adds)
        parts.append(f"{count} add{'s' if count > 1 else ''} fused into the batchnorm before "
                     f"{'them' if count > 1 else 'it'}")
    if pooled:
        count = len(pooled)
        parts.append(f"{count} activation{'s' if count > 1 else ''} fused into the average pooling after "
                     f"{'them' if count > 1 else 'it'}")
    return f"no passes but fuse-training: {'; '.join(parts)}" if parts else "no passes"


def _add_gemm_share(layers: list[dict], gemm_gflops: float | None) -> None:
    if not gemm_gflops:
        return
    for row in layers:
        for phase in ("forward", "backward"):
            gflops = row.get(f"{phase}_gflops")
            if f"{phase}_s" in row:
                row[f"{phase}_gemm_percent"] = 100 * gflops / gemm_gflops if gflops else None


def _cnnlang_seconds(result: dict) -> dict[str, float]:
    """cnnlang's time per task that the references are compared with: inference with the
    selected passes (as run), the training step."""
    seconds = {"inference": result.get("optimised", result)["inference_s"]}
    if "train_step_s" in result:
        seconds["train"] = result["train_step_s"]
    return seconds


def _time_references(args: argparse.Namespace, model: Model, result: dict, references: list[str]) -> dict:
    import numba

    from ..compare.summary import time_references

    cnnlang_seconds = _cnnlang_seconds(result)
    return time_references(references, args.model, input_shape=args.input, batch=args.batch, train="train" in cnnlang_seconds,
                           repeat=args.repeat, seed=args.seed, threads=numba.get_num_threads(), cnnlang_seconds=cnnlang_seconds)


def _layer_table(console: Console, layers: list[dict], train: bool, gemm_gflops: float | None) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for title in ("Layer", "Op", "MACs", "Forward ms", "GFLOP/s", "% GEMM"):
        table.add_column(title, justify="left" if title in ("Layer", "Op") else "right")
    if train:
        for title in ("Backward ms", "GFLOP/s ", "% GEMM "):
            table.add_column(title, justify="right")
    total_forward = sum(r["forward_s"] for r in layers)
    for row in layers:
        op = row["op"] + "".join(f"+{name}" for name in row["fused"])
        cells = [row["layer"], op, f"{row['macs']:,}" if row["macs"] else "", f"{row['forward_s'] * 1000:.3f}",
                 _number(row["forward_gflops"]), _number(row.get("forward_gemm_percent"), "{:.0f}%")]
        if train:
            cells += [f"{row['backward_s'] * 1000:.3f}", _number(row["backward_gflops"]),
                      _number(row.get("backward_gemm_percent"), "{:.0f}%")]
        table.add_row(*cells)
    macs = sum(r["macs"] for r in layers)
    forward = 2 * macs / total_forward / 1e9
    cells = ["total", "", f"{macs:,}", f"{total_forward * 1000:.2f}", f"{forward:.1f}", _number(gemm_gflops and 100 * forward / gemm_gflops, "{:.0f}%")]
    if train:
        total_backward = sum(r["backward_s"] for r in layers)
        backward = 4 * macs / total_backward / 1e9 if total_backward else None
        cells += [f"{total_backward * 1000:.2f}", _number(backward), _number(backward and gemm_gflops and 100 * backward / gemm_gflops, "{:.0f}%")]
    table.add_row(*cells, style="bold")
    console.print(table)


def _number(value: float | None, form: str = "{:.1f}") -> str:
    return form.format(value) if value else ""
