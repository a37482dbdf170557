"""``cnnlang export``: a compiled model → an ONNX ModelProto of standard operators.

Each layer becomes the ONNX operator that computes the same function in inference (dropout is
left out). Node, tensor and initializer names are cnnlang's (``basic3/conv1``,
``basic3/conv1.weight``); helper nodes an operator needs (a Flatten before Gemm) take the
layer's name with a suffix. With optimisation passes, the optimised graph is exported: folded
batchnorms are gone from it and their effect is in the conv's weights, and a fused activation
becomes its own node again under its source name (ONNX has no fused epilogues).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import InterchangeError, require_onnx
from .functions import ExportedNode

DEFAULT_OPSET = 17
# Softmax over one axis (not the flattened trailing axes) needs opset 13.
MIN_OPSET = 13
DOMAIN = "cnnlang"


@dataclass
class _Emitter:
    """Collects nodes and initializers, and knows which ONNX tensor holds each cnnlang node."""

    onnx: object
    state: dict[str, dict[str, np.ndarray]]  # node → {param or buffer name → array}
    nodes: list[ExportedNode] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    tensor: dict[str, str] = field(default_factory=dict)  # cnnlang node → its output tensor

    def node(self, op_type: str, inputs: list[str], output: str, name: str, path: tuple[str, ...], **attributes) -> str:
        proto = self.onnx.helper.make_node(op_type, inputs, [output], name=name, **attributes)
        self.nodes.append(ExportedNode(proto, path))
        return output

    def weight(self, node: str, name: str) -> str:
        key = f"{node}.{name}"
        self.initializers[key] = np.ascontiguousarray(self.state[node][name], dtype=np.float32)
        return key

    def constant(self, key: str, value: np.ndarray) -> str:
        self.initializers[key] = np.ascontiguousarray(value, dtype=np.float32)
        return key


def export_model(
    model,
    *,
    weights: str | Path | None = None,
    opset: int = DEFAULT_OPSET,
    passes: str | list[str] | None = None,
    dynamic_batch: bool = False,
    functions: bool = False,
    seed: int = 0,
):
    """The model as an ONNX ModelProto (float32). ``weights``: a weight file to load (else the
    seeded initial weights); ``passes``: optimisation passes to apply first (``cnnlang.passes``);
    ``functions``: each block instance becomes a call of an ONNX local function."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise InterchangeError(f"--opset must be between {MIN_OPSET} and {newest} (this onnx package's newest), got {opset}")
    network = model.build(seed=seed, passes=passes)
    if weights is not None:
        network.load(weights)
    network.eval()
    if network.inference_plan is not None:
        network.refresh()
        graph, steps = network.inference_plan.graph, network.inference_plan.steps
    else:
        graph, steps = model.graph, network.plan.steps
    state = {step.node: {**step.op.params, **step.op.buffers} for step in steps}
    emitter = _Emitter(onnx, state)
    _emit_graph(graph, emitter)
    return _assemble(onnx, model, graph, emitter, opset, dynamic_batch, functions)


def _emit_graph(graph, emitter: _Emitter) -> None:
    from .. import ir

    problems = []
    input_node = graph.graph["input"]
    emitter.tensor[input_node] = input_node
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        sources = [emitter.tensor[i] for i in data["inputs"]]
        shapes = [graph.nodes[i]["shape"] for i in data["inputs"]]
        convert = _CONVERTERS.get(data["op"])
        if convert is None:
            problems.append(f"{node}: no ONNX form for {data['op']}")
            continue
        try:
            out = convert(emitter, node, data, sources, shapes)
        except InterchangeError as error:
            problems.append(f"{node}: {error}")
            continue
        if data.get("activation"):
            fused = [f["name"] for f in data.get("fused", []) if f["op"] == data["activation"]]
            name = fused[0] if fused else f"{node}/{data['activation']}"
            out = emitter.node(_ACTIVATIONS[data["activation"]], [out], name, name, data["path"])
        emitter.tensor[node] = out
    if problems:
        raise InterchangeError("cannot export:\n  " + "\n  ".join(problems))


def _assemble(onnx, model, graph, emitter: _Emitter, opset: int, dynamic_batch: bool, functions: bool):
    helper = onnx.helper
    batch = "N" if dynamic_batch else 1
    input_node = graph.graph["input"]
    inputs = [helper.make_tensor_value_info(input_node, onnx.TensorProto.FLOAT, [batch, *graph.nodes[input_node]["shape"]])]
    outputs, nodes = [], [n for n in emitter.nodes]
    for name in graph.graph["outputs"]:
        tensor = emitter.tensor[graph.graph.get("aliases", {}).get(name, name)]
        if tensor != name:  # an output whose layer was left out (dropout): keep its name
            proto = helper.make_node("Identity", [tensor], [name], name=name)
            nodes.append(ExportedNode(proto, ()))
        outputs.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [batch, *graph.nodes[name]["shape"]]))
    initializers = {k: onnx.numpy_helper.from_array(v, k) for k, v in emitter.initializers.items()}
    local_functions = []
    if functions:
        from .functions import group_into_functions

        nodes, local_functions = group_into_functions(
            onnx, nodes, set(initializers), [o.name for o in outputs], graph.graph["scopes"], DOMAIN, opset
        )
    body = helper.make_graph([n.proto for n in nodes], model.name, inputs, outputs, list(initializers.values()))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(DOMAIN, 1)] if local_functions else [])
    proto = helper.make_model(body, opset_imports=opsets, functions=local_functions, producer_name="cnnlang")
    proto.ir_version = _ir_version_for(onnx, opset, local_functions)
    proto.doc_string = f"exported by cnnlang from {model.source}"
    return proto


def _ir_version_for(onnx, opset: int, functions: list) -> int:
    """The IR version of the ONNX release that introduced ``opset``, so older runtimes read the
    file; local functions need IR 8."""
    released = min((row[1] for row in onnx.helper.VERSION_TABLE if row[2] == opset), default=onnx.IR_VERSION)
    return max(released, 8) if functions else released


def save_onnx(proto, path: str | Path, overwrite: bool = False) -> None:
    """Check the model fully (shapes and types), then write it atomically."""
    from ..files import write_atomically

    onnx = require_onnx()
    onnx.checker.check_model(proto, full_check=True)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --force to replace it")
    write_atomically(path, lambda temporary: onnx.save_model(proto, temporary))


# ---- one converter per layer type: (emitter, node, data, input tensors, input shapes) → output tensor


def _window_attributes(layer, shape) -> dict:
    kernels, strides, pads, dilations = layer.geometry(shape)
    return {
        "kernel_shape": list(kernels),
        "strides": list(strides),
        "pads": [p[0] for p in pads] + [p[1] for p in pads],
        "dilations": list(dilations),
    }


def _conv(e: _Emitter, node, data, sources, shapes) -> str:
    layer = data["layer"]
    inputs = [sources[0], e.weight(node, "weight")]
    if "bias" in e.state[node] and e.state[node]["bias"] is not None:
        inputs.append(e.weight(node, "bias"))
    out = e.node("Conv", inputs, node, node, data["path"], group=layer.groups, **_window_attributes(layer, shapes[0]))
    if data.get("residual"):  # fuse-residual's add becomes its own node again, under its source name
        add = next(f["name"] for f in data["fused"] if f["op"] == "add")
        out = e.node("Add", [out, sources[1]], add, add, data["path"])
    return out


def _pool(op_type: str) -> Callable:
    def convert(e: _Emitter, node, data, sources, shapes) -> str:
        layer = data["layer"]
        attributes = _window_attributes(layer, shapes[0])
        attributes["ceil_mode"] = int(layer.ceil)
        if op_type == "AveragePool":
            attributes["count_include_pad"] = int(layer.count_pad)
            if attributes.pop("dilations") != [1] * len(attributes["strides"]):
                raise InterchangeError("average pooling with dilation has no ONNX form")
        return e.node(op_type, sources, node, node, data["path"], **attributes)

    return convert


def _fc(e: _Emitter, node, data, sources, shapes) -> str:
    source = sources[0]
    if len(shapes[0]) > 1:
        source = e.node("Flatten", [source], f"{node}/flatten", f"{node}/flatten", data["path"], axis=1)
    inputs = [source, e.weight(node, "weight")]
    if "bias" in e.state[node] and e.state[node]["bias"] is not None:
        inputs.append(e.weight(node, "bias"))
    return e.node("Gemm", inputs, node, node, data["path"], transB=1)


def _batchnorm(e: _Emitter, node, data, sources, shapes) -> str:
    layer = data["layer"]
    channels = shapes[0][0]
    if layer.affine:
        scale, bias = e.weight(node, "gamma"), e.weight(node, "beta")
    else:
        scale = e.constant(f"{node}.gamma", np.ones(channels))
        bias = e.constant(f"{node}.beta", np.zeros(channels))
    inputs = [sources[0], scale, bias, e.weight(node, "running_mean"), e.weight(node, "running_var")]
    return e.node("BatchNormalization", inputs, node, node, data["path"], epsilon=layer.eps)


def _lrn(e: _Emitter, node, data, sources, shapes) -> str:
    layer = data["layer"]
    if layer.size % 2 == 0:
        # ONNX puts the extra channel of an even window after the centre; PyTorch (and cnnlang) before.
        raise InterchangeError(f"lrn with an even size ({layer.size}) has no ONNX form (ONNX centres the window differently)")
    return e.node("LRN", sources, node, node, data["path"], size=layer.size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)


def _simple(op_type: str, **fixed) -> Callable:
    def convert(e: _Emitter, node, data, sources, shapes) -> str:
        return e.node(op_type, sources, node, node, data["path"], **fixed)

    return convert


def _add(e: _Emitter, node, data, sources, shapes) -> str:
    return e.node("Add" if len(sources) == 2 else "Sum", sources, node, node, data["path"])


def _dropout(e: _Emitter, node, data, sources, shapes) -> str:
    return sources[0]  # inference export: the identity, so no node at all


_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}

_CONVERTERS: dict[str, Callable] = {
    "conv": _conv,
    "conv1d": _conv,
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "globalavgpool": _simple("GlobalAveragePool"),
    "fc": _fc,
    "flatten": _simple("Flatten", axis=1),
    "relu": _simple("Relu"),
    "tanh": _simple("Tanh"),
    "sigmoid": _simple("Sigmoid"),
    "softmax": _simple("Softmax", axis=1),
    "batchnorm": _batchnorm,
    "dropout": _dropout,
    "lrn": _lrn,
    "add": _add,
    "concat": _simple("Concat", axis=1),
}
