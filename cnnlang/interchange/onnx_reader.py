"""Reading an ONNX file into cnnlang layers: one :class:`Layer` per ONNX node that computes
something, with its DSL arguments and its weights in cnnlang's parameter names.

Nothing in the file is executed: the protobuf is parsed, local functions are inlined, and each
node is matched against the operators listed in ``_READERS``. Every node that has no cnnlang
form is collected, and all of them are reported at once.

(~430 lines: one small reader per supported ONNX operator in ``_READERS``, kept side by side like
ONNX's own operator tables, so what is supported is read in one place.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..layers import REGISTRY, ArgumentError, LayerType, Symbol
from ..layers.window import resolve_padding
from . import InterchangeError, UnsupportedModel, require_onnx


@dataclass
class Layer:
    """One cnnlang layer made from an ONNX node (or two: MatMul + Add become one fc)."""

    id: str  # the ONNX node's output tensor, unique in the graph
    op: str
    layer: LayerType
    inputs: list[str]  # ids of the producing layers, or the input's name
    shape: tuple[int, ...] = ()  # the output's shape without the batch axis
    params: dict[str, np.ndarray] = field(default_factory=dict)  # cnnlang names: weight, gamma, ...
    onnx_name: str = ""


@dataclass
class ImportedGraph:
    name: str
    input: str
    input_shape: tuple[int, ...]
    layers: list[Layer]  # topological order
    outputs: list[str]


def read_onnx(path: str | Path) -> ImportedGraph:
    """The ONNX file as cnnlang layers; InterchangeError with one clear line for a file that is
    not ONNX, or with every unsupported node listed."""
    onnx = require_onnx()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InterchangeError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        model = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf raises DecodeError, RuntimeWarning-like errors, ...
        raise InterchangeError(f"{path}: not an ONNX model file (it does not parse: {type(error).__name__})") from None
    if not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise InterchangeError(f"{path}: not an ONNX model file (no graph, nodes or opset)")
    external = [t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        # The file names other files to read its weights from; a model file must not make
        # cnnlang read arbitrary paths, so such weights are refused rather than followed.
        raise InterchangeError(
            f"{path}: {len(external)} weight(s) are stored in other files (ONNX external data, e.g. '{external[0]}'); "
            "save the model with its weights inside (onnx.save_model(model, path, save_as_external_data=False))"
        )
    if model.functions:
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    try:
        shapes = _infer_shapes(onnx, model)
    except Exception as error:  # noqa: BLE001 - the library raises several kinds
        raise InterchangeError(f"{path}: ONNX shape inference failed: {error}") from None
    return _Reader(onnx, model, shapes, path).read()


def _infer_shapes(onnx, model) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape (-1 for an unknown size). Inference runs on a copy whose large
    initializers are declared inputs instead (a reshape's small shape tensors keep their values):
    serialising ResNet-152's weights for it took most of an import."""
    helper, graph = onnx.helper, model.graph
    listed = {i.name for i in graph.input}  # older files list initializers among the inputs too
    small = [t for t in graph.initializer if _numel(t.dims) <= 64]
    declared = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in graph.initializer
                if _numel(t.dims) > 64 and t.name not in listed]
    light = helper.make_model(
        helper.make_graph(list(graph.node), graph.name, [*graph.input, *declared], list(graph.output), small),
        opset_imports=list(model.opset_import),
    )
    light.ir_version = model.ir_version
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False).graph
    shapes = {}
    for info in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims)
    return shapes


def _numel(dims) -> int:
    return int(np.prod(list(dims), dtype=np.int64))


class _Reader:
    def __init__(self, onnx, model, shapes: dict[str, tuple[int, ...]], path: Path):
        self.onnx, self.model, self.shapes, self.path = onnx, model, shapes, path
        graph = model.graph
        self.constants = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        self.producer: dict[str, str] = {}  # tensor → layer id (or the input), after pass-throughs
        self.layers: list[Layer] = []
        self.problems: list[str] = []
        self.failed: set[str] = set()  # outputs of nodes that could not be read

    def read(self) -> ImportedGraph:
        graph = self.model.graph
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise InterchangeError(f"{self.path}: cnnlang models take one input; this graph has {len(inputs)}")
        name = inputs[0].name
        shape = self.shapes.get(name, ())
        if not 2 <= len(shape) <= 4 or any(d < 1 for d in shape[1:]):
            raise InterchangeError(
                f"{self.path}: input '{name}' must be N x C x H x W, N x C x L or N x F with fixed sizes, got {shape}"
            )
        self.producer[name] = name
        for node in graph.node:
            reader = _READERS.get(node.op_type)
            if node.domain not in ("", "ai.onnx") or reader is None:
                self._unsupported(node, "no cnnlang layer computes this operator")
                continue
            try:
                reader(self, node)
            except _Unsupported as why:
                self._unsupported(node, str(why))
            except _AfterFailure:
                self.failed.update(node.output)
        _drop_flatten_before_fc(self.layers)
        if self.problems:
            raise UnsupportedModel(
                f"{self.path}: {len(self.problems)} node(s) cannot be imported:\n  " + "\n  ".join(self.problems)
            )
        outputs = [self.producer[o.name] for o in graph.output]
        title = graph.name if graph.name.isidentifier() else "imported"
        return ImportedGraph(title, name, tuple(shape[1:]), self.layers, outputs)

    # -- helpers
    def _unsupported(self, node, why: str) -> None:
        self.failed.update(node.output)  # what reads it is not reported again
        self.problems.append(f"{node.op_type} '{node.name or node.output[0]}': {why}")

    def constant_node(self, node) -> None:
        value = self.onnx.helper.get_attribute_value(node.attribute[0]) if node.attribute else None
        if value is None or not hasattr(value, "dims"):
            raise _Unsupported("only tensor constants are supported")
        self.constants[node.output[0]] = self.onnx.numpy_helper.to_array(value)

    def attributes(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def source(self, node, index: int = 0) -> str:
        name = node.input[index]
        if name in self.failed:
            raise _AfterFailure
        if name not in self.producer:
            raise _Unsupported(f"input '{name}' is a constant or unknown tensor, not a layer's output")
        return self.producer[name]

    def constant(self, node, index: int, what: str) -> np.ndarray:
        if index >= len(node.input) or node.input[index] not in self.constants:
            raise _Unsupported(f"the {what} must be a constant (an initializer)")
        return self.constants[node.input[index]]

    def shape(self, tensor: str) -> tuple[int, ...]:
        shape = self.shapes.get(tensor)
        if shape is None:
            raise _Unsupported(f"the shape of '{tensor}' is unknown")
        return shape

    def add(self, node, op: str, arguments: dict, inputs: list[str], params: dict | None = None) -> Layer:
        for name in ("stride", "pad", "dilation"):
            value = arguments.get(name)
            if isinstance(value, tuple) and len(set(value)) == 1:
                arguments[name] = value[:1]  # one size for every axis, written once as a user would
        try:
            layer = REGISTRY[op].bind([], arguments)
        except ArgumentError as error:
            raise _Unsupported(str(error)) from None
        shape = tuple(self.shapes.get(node.output[0]) or ())[1:]
        entry = Layer(node.output[0], op, layer, inputs, shape, dict(params or {}), node.name)
        self.layers.append(entry)
        self.producer[node.output[0]] = entry.id
        return entry

    def pass_through(self, node) -> None:
        if node.input[0] in self.constants:  # torch shares parameters through Identity nodes
            self.constants[node.output[0]] = self.constants[node.input[0]]
            return
        self.producer[node.output[0]] = self.source(node)


def _drop_flatten_before_fc(layers: list[Layer]) -> None:
    """fc flattens its input itself, so a Flatten read only by a Gemm (as ONNX needs) is noise."""
    readers: dict[str, list[Layer]] = {}
    for layer in layers:
        for source in layer.inputs:
            readers.setdefault(source, []).append(layer)
    for flatten in [l for l in layers if l.op == "flatten"]:
        users = readers.get(flatten.id, [])
        if users and all(u.op == "fc" for u in users):
            for user in users:
                user.inputs = [flatten.inputs[0] if i == flatten.id else i for i in user.inputs]
            layers.remove(flatten)


def _real(value: float) -> float:
    """A float32 attribute as the shortest decimal that gives it (1e-05, not 9.999999747378752e-06)."""
    return float(np.format_float_positional(np.float32(value), unique=True, trim="0"))


class _Unsupported(Exception):
    """Why one node cannot become a cnnlang layer."""


class _AfterFailure(Exception):
    """A node reads the output of a node already reported: one report per cause is enough."""


# ---- window geometry shared by Conv and the pools


def _pads(reader: _Reader, node, kernels, strides, dilations, allow_same: bool):
    """cnnlang's ``pad``: a size per axis (equal before and after), or ``same``."""
    attributes = reader.attributes(node)
    rank = len(kernels)
    sizes = reader.shape(node.input[0])[2:]
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernels, dilations))
    auto = attributes.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return (0,) * rank
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = resolve_padding("same", sizes, effective, strides)
        if auto == "SAME_LOWER":
            pads = tuple((after, before) for before, after in pads)
    else:
        flat = list(attributes.get("pads", [0] * 2 * rank))
        pads = tuple(zip(flat[:rank], flat[rank:]))
    if all(before == after for before, after in pads):
        return tuple(before for before, _ in pads)
    if allow_same and pads == resolve_padding("same", sizes, effective, strides):
        return Symbol("same")
    raise _Unsupported(f"padding {[list(p) for p in pads]} (before, after per axis) is uneven, and cnnlang pads "
                       "both sides alike (or 'same' on a convolution, which puts the extra pixel after)")


def _read_conv(r: _Reader, node) -> None:
    weight = r.constant(node, 1, "weight")
    attributes = r.attributes(node)
    rank = weight.ndim - 2
    if rank not in (1, 2):
        raise _Unsupported(f"{rank}-D convolution (cnnlang has 1-D and 2-D)")
    kernels = tuple(attributes.get("kernel_shape", weight.shape[2:]))
    strides = tuple(attributes.get("strides", [1] * rank))
    dilations = tuple(attributes.get("dilations", [1] * rank))
    pads = _pads(r, node, kernels, strides, dilations, allow_same=True)
    arguments = {"filters": int(weight.shape[0]), "kernel": kernels, "stride": strides, "pad": pads,
                 "dilation": dilations, "groups": int(attributes.get("group", 1))}
    params = {"weight": weight}
    if len(node.input) > 2 and node.input[2]:
        params["bias"] = r.constant(node, 2, "bias")
    else:
        arguments["bias"] = False
    r.add(node, "conv" if rank == 2 else "conv1d", arguments, [r.source(node)], params)


def _read_pool(op: str):
    def read(r: _Reader, node) -> None:
        attributes = r.attributes(node)
        if len(node.output) > 1 and node.output[1]:
            raise _Unsupported("the indices output of MaxPool is not supported")
        kernels = tuple(attributes["kernel_shape"])
        rank = len(kernels)
        strides = tuple(attributes.get("strides", [1] * rank))
        dilations = tuple(attributes.get("dilations", [1] * rank))
        pads = _pads(r, node, kernels, strides, dilations, allow_same=False)
        arguments = {"kernel": kernels, "stride": strides, "pad": pads, "ceil": bool(attributes.get("ceil_mode", 0))}
        if op == "maxpool":
            arguments["dilation"] = dilations
        elif any(d != 1 for d in dilations):
            raise _Unsupported("average pooling with dilation")
        else:
            # ONNX counts only real values by default; the padding only matters where there is some.
            arguments["count_pad"] = bool(attributes.get("count_include_pad", 0)) or (max(pads) == 0 and not arguments["ceil"])
        r.add(node, op, arguments, [r.source(node)])

    return read


def _read_gemm(r: _Reader, node) -> None:
    attributes = r.attributes(node)
    if attributes.get("transA", 0):
        raise _Unsupported("Gemm with transA (the layer's input transposed)")
    weight = np.asarray(r.constant(node, 1, "weight"), dtype=np.float64)
    weight = (weight if attributes.get("transB", 0) else weight.T) * attributes.get("alpha", 1.0)
    params = {"weight": weight.astype(np.float32)}
    arguments = {"units": int(weight.shape[0])}
    if len(node.input) > 2 and node.input[2]:
        bias = np.broadcast_to(r.constant(node, 2, "bias") * attributes.get("beta", 1.0), (weight.shape[0],))
        params["bias"] = np.array(bias, np.float32)
    else:
        arguments["bias"] = False
    r.add(node, "fc", arguments, [r.source(node)], params)


def _read_matmul(r: _Reader, node) -> None:
    weight = r.constant(node, 1, "weight")
    if weight.ndim != 2 or len(r.shape(node.input[0])) != 2:
        raise _Unsupported("only MatMul of N x F features by a constant F x units matrix (a fully connected layer)")
    r.add(node, "fc", {"units": int(weight.shape[1]), "bias": False}, [r.source(node)], {"weight": weight.T.copy()})


def _read_add(r: _Reader, node) -> None:
    constants = [i for i in node.input if i in r.constants]
    if node.op_type == "Add" and len(constants) == 1:
        # MatMul + Add: the bias of a fully connected layer.
        other = next(i for i in node.input if i not in r.constants)
        producer = next((layer for layer in r.layers if layer.id == r.producer.get(other)), None)
        if producer is None or producer.op != "fc" or "bias" in producer.params:
            raise _Unsupported("adding a constant is supported only as the bias of a MatMul")
        if sum(other in n.input for n in r.model.graph.node) != 1:
            raise _Unsupported("the MatMul's output is also read elsewhere, so the bias cannot join it")
        bias = np.broadcast_to(r.constants[constants[0]], (producer.layer.units,)).astype(np.float32)
        producer.params["bias"] = bias
        producer.layer = REGISTRY["fc"].bind([], {"units": producer.layer.units})
        r.producer[node.output[0]] = producer.id
        return
    if constants:
        raise _Unsupported("adding a constant tensor")
    r.add(node, "add", {}, [r.source(node, i) for i in range(len(node.input))])


def _read_batchnorm(r: _Reader, node) -> None:
    attributes = r.attributes(node)
    if attributes.get("training_mode", 0) or len(node.output) > 1 and any(node.output[1:]):
        raise _Unsupported("batch normalisation in training mode")
    names = ("gamma", "beta", "running_mean", "running_var")
    params = {name: r.constant(node, i + 1, name) for i, name in enumerate(names)}
    r.add(node, "batchnorm", {"eps": _real(attributes.get("epsilon", 1e-5))}, [r.source(node)], params)


def _read_lrn(r: _Reader, node) -> None:
    attributes = r.attributes(node)
    size = int(attributes["size"])
    if size % 2 == 0:
        raise _Unsupported(f"LRN over an even number of channels ({size}): ONNX centres the window differently")
    arguments = {"size": size, "alpha": _real(attributes.get("alpha", 1e-4)), "beta": _real(attributes.get("beta", 0.75)),
                 "k": _real(attributes.get("bias", 1.0))}
    r.add(node, "lrn", arguments, [r.source(node)])


def _read_softmax(r: _Reader, node) -> None:
    axis = r.attributes(node).get("axis", -1 if _opset(r) >= 13 else 1)
    rank = len(r.shape(node.input[0]))
    if axis % rank != 1 or (_opset(r) < 13 and rank > 2):
        raise _Unsupported(f"softmax over axis {axis} of a rank-{rank} tensor (cnnlang's softmax is over channels)")
    r.add(node, "softmax", {}, [r.source(node)])


def _read_flatten(r: _Reader, node) -> None:
    if r.attributes(node).get("axis", 1) != 1:
        raise _Unsupported("Flatten keeps the batch axis only with axis = 1")
    r.add(node, "flatten", {}, [r.source(node)])


def _read_reshape(r: _Reader, node) -> None:
    out = r.shapes.get(node.output[0])
    source = r.shape(node.input[0])
    if out is None or len(out) != 2 or out[1] != int(np.prod(source[1:])):
        raise _Unsupported("only a Reshape that flattens N x ... into N x features")
    r.add(node, "flatten", {}, [r.source(node)])


def _read_concat(r: _Reader, node) -> None:
    axis = r.attributes(node)["axis"]
    if axis % len(r.shape(node.input[0])) != 1:
        raise _Unsupported(f"concatenation along axis {axis} (cnnlang joins along channels, axis 1)")
    r.add(node, "concat", {}, [r.source(node, i) for i in range(len(node.input))])


def _read_simple(op: str):
    def read(r: _Reader, node) -> None:
        r.add(node, op, {}, [r.source(node)])

    return read


def _read_dropout(r: _Reader, node) -> None:
    if len(node.output) > 1 and node.output[1]:
        raise _Unsupported("the mask output of Dropout")
    r.pass_through(node)


def _opset(r: _Reader) -> int:
    return next((o.version for o in r.model.opset_import if o.domain in ("", "ai.onnx")), 1)


_READERS = {
    "Conv": _read_conv,
    "MaxPool": _read_pool("maxpool"),
    "AveragePool": _read_pool("avgpool"),
    "GlobalAveragePool": _read_simple("globalavgpool"),
    "Gemm": _read_gemm,
    "MatMul": _read_matmul,
    "Add": _read_add,
    "Sum": _read_add,
    "BatchNormalization": _read_batchnorm,
    "LRN": _read_lrn,
    "Relu": _read_simple("relu"),
    "Tanh": _read_simple("tanh"),
    "Sigmoid": _read_simple("sigmoid"),
    "Softmax": _read_softmax,
    "Flatten": _read_flatten,
    "Reshape": _read_reshape,
    "Concat": _read_concat,
    "Dropout": _read_dropout,
    "Identity": lambda r, node: r.pass_through(node),
    "Constant": lambda r, node: r.constant_node(node),
}
