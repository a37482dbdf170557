"""The graph IR: a NetworkX DiGraph with one node per layer.

Node attributes (the whole vocabulary; passes add only those listed under "analysis"):

- ``op``: the layer's DSL name (``"input"`` for the network input);
- ``layer``: the bound :class:`~cnnlang.layers.LayerType` (None for the input);
- ``inputs``: ordered list of producer node ids (edges mirror it, with an ``index`` attribute);
- ``span``: where the layer is written; ``call_stack``: spans of the block calls that led there,
  outermost first; ``path``: the block instances the node sits in, outermost first;
- ``order``: creation order, which is topological, so every report is stable;
- ``shortcut`` (only on the ``add`` of a ``residual``): ``"identity"`` or ``"projection"``; its
  inputs are [body output, shortcut output].

Analysis attributes, from :mod:`cnnlang.passes`: ``shape``, ``error``, ``params``, ``trainable``,
``buffers``, ``macs``, ``activations``, ``rf``, ``jump``.

Optimisation attributes, from :mod:`cnnlang.passes.optimise` (inference only):

- ``fused``: ``[{"op", "name", "line"}]``, the source layers absorbed into this node, in the order
  they run after its own op;
- ``folded`` / ``folded_layers`` (conv, conv1d, fc): the batchnorm nodes folded into the weights
  and their layer types; ``original_bias``: whether the source layer had a bias (its ``layer`` is
  rebound with ``bias=True``);
- ``activation`` (conv, conv1d, fc; add and batchnorm: relu only): ``"relu" | "tanh" | "sigmoid"`` applied
  after the bias (after the sum for add);
- ``residual`` (conv): the conv has a second input, added to its output after the bias and
  before the activation (a residual ``add`` fused into the conv's epilogue);
- ``write_into``: ``(concat, channel offset)``: the output goes straight into that slice of the
  concat's buffer; ``eliminated`` (concat): at least one input writes into it;
- ``in_place`` (elementwise): the output overwrites the input's buffer; (conv with ``residual``):
  the output overwrites the shortcut's buffer, which nothing reads after the conv
  (:func:`overwritten_input`);
- ``streamed_into`` (a depthwise 3x3 conv): the 1x1 conv, its only reader, that computes this
  node's output chunk by chunk from this node's input and never stores it (``fuse-depthwise``):
  the node has no buffer, and its input lives until that conv;
- ``algorithm`` (conv only: 3x3 kernel, stride 1, dilation 1, one group): ``"winograd"`` runs it
  as Winograd F(2x2, 3x3) instead of im2col + GEMM (the ``winograd`` pass sets it where that
  measured faster).

Graph attributes: ``name``, ``input`` (the input node), ``outputs`` (primary first), ``scopes``
(path → :class:`Scope` of each block instance or group), ``errors`` (CnnErrors found by passes);
after optimisation also ``optimised`` (pass names applied), ``pass_log`` (what each changed or
declined), ``aliases`` (removed node → the survivor computing its tensor) and ``memory`` (the
buffer plan: ``slots``, ``assign``, ``before``, ``after``, in values per example).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from .errors import CnnError, Span
from .layers import EPILOGUE_ACTIVATIONS, LayerType, format_shape
from .layers.base import numel


@dataclass
class Scope:
    """A block instance (``block`` set) or a labelled repetition (``block`` None)."""

    path: tuple[str, ...]
    block: str | None
    signature: str  # e.g. "basic(128, stride=2)" or "basic(64) * 2"
    span: Span
    arguments: dict[str, Any] = field(default_factory=dict)


def new_graph(name: str) -> nx.DiGraph:
    graph = nx.DiGraph(name=name, input=None, outputs=[], scopes={}, errors=[])
    return graph


def add_layer(
    graph: nx.DiGraph,
    node: str,
    op: str,
    layer: LayerType | None,
    inputs: list[str],
    span: Span,
    call_stack: tuple[Span, ...] = (),
    path: tuple[str, ...] = (),
) -> str:
    if node in graph:
        raise ValueError(f"node {node!r} exists")
    graph.add_node(
        node, op=op, layer=layer, inputs=[], span=span, call_stack=call_stack, path=path,
        order=graph.number_of_nodes(),
    )
    set_inputs(graph, node, inputs)
    return node


def set_inputs(graph: nx.DiGraph, node: str, inputs: list[str]) -> None:
    """Give ``node`` these ordered inputs, keeping the edges (with their ``index`` lists) in step."""
    for source in list(graph.predecessors(node)):
        graph.remove_edge(source, node)
    graph.nodes[node]["inputs"] = list(inputs)
    for index, source in enumerate(inputs):
        # A tensor used twice by one layer (add(x, x)) keeps one edge; `inputs` keeps both uses.
        if graph.has_edge(source, node):
            graph.edges[source, node]["index"].append(index)
        else:
            graph.add_edge(source, node, index=[index])


def enclosing_calls(graph: nx.DiGraph, path: tuple[str, ...], call_stack: tuple[Span, ...]) -> list[tuple[Span, str]]:
    """(where it was called, block name) for each block instance around ``path``, innermost
    first: the "in block ... used here" notes of a diagnostic. Each call on the stack made one
    block scope on the path (labelled groups make the others)."""
    scopes = graph.graph["scopes"]
    blocks = [scopes[path[:end]].block for end in range(1, len(path) + 1)]
    return list(reversed(list(zip(call_stack, [b for b in blocks if b is not None]))))


def ordered(graph: nx.DiGraph) -> list[str]:
    """Nodes in creation order, which is a topological order."""
    return sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])


def consumers(graph: nx.DiGraph, node: str) -> list[str]:
    return sorted(graph.successors(node), key=lambda n: graph.nodes[n]["order"])


def read_where(graph: nx.DiGraph, reader: str) -> str:
    """The node at whose step ``reader`` reads its inputs: its own, or for a depthwise conv
    ``streamed_into`` a 1x1 conv, that conv's (which computes it there)."""
    return graph.nodes[reader].get("streamed_into", reader)


def why_not_streamed(graph: nx.DiGraph, node: str, reader: str) -> str:
    """Why conv ``node`` cannot be computed inside ``reader`` (fuse-depthwise's ``streamed_into``),
    or "": the conv layer's rules for both (``Conv.why_not_streamed``, ``Conv.why_not_streaming``),
    relu or no activation on each, no residual on the reader. The pass and ``verify`` ask this, the
    runtime the layer's rules; whether ``reader`` is ``node``'s only reader is the pass's own guard."""
    data, reading = graph.nodes[node], graph.nodes[reader]
    reason = data["layer"].why_not_streamed(graph.nodes[data["inputs"][0]]["shape"])
    if reason:
        return reason
    if data.get("activation") not in (None, "relu"):
        return f"it applies {data['activation']} (only relu is fused)"
    if reading["op"] != "conv":
        return f"its reader {reader} is a {reading['op']}, not a 1x1 conv"
    reason = reading["layer"].why_not_streaming(graph.nodes[reading["inputs"][0]]["shape"])
    if reason:
        return f"its reader {reader} {reason}"
    if reading.get("residual"):
        return f"its reader {reader} adds a residual"
    if reading.get("activation") not in (None, "relu"):
        return f"its reader {reader} applies {reading['activation']} (only relu is fused)"
    return ""


def overwritten_input(graph: nx.DiGraph, node: str) -> str | None:
    """The input whose buffer an ``in_place`` node writes its output into: an elementwise node's
    only input, a residual conv's shortcut (its second input); None when the node is not in place."""
    data = graph.nodes[node]
    if not data.get("in_place"):
        return None
    return data["inputs"][1] if data.get("residual") else data["inputs"][0]


def layer_nodes(graph: nx.DiGraph) -> Iterable[str]:
    return (n for n in ordered(graph) if graph.nodes[n]["op"] != "input")


def verify(graph: nx.DiGraph) -> None:
    """Check the IR's invariants; a failure is a compiler bug, not a user error."""
    problems = []
    if not nx.is_directed_acyclic_graph(graph):
        problems.append("the graph has a cycle")
    inputs = [n for n, d in graph.nodes(data=True) if d.get("op") == "input"]
    if inputs != [graph.graph.get("input")]:
        problems.append(f"expected exactly the declared input node, found {inputs}")
    for node, data in graph.nodes(data=True):
        for key in ("op", "layer", "inputs", "span", "call_stack", "path", "order"):
            if key not in data:
                problems.append(f"{node}: missing attribute {key!r}")
        if "inputs" not in data:
            continue
        expected = {}
        for index, source in enumerate(data["inputs"]):
            expected.setdefault(source, []).append(index)
        actual = {u: graph.edges[u, node]["index"] for u in graph.predecessors(node)}
        if expected != actual:
            problems.append(f"{node}: inputs {data['inputs']} do not match its edges {actual}")
        layer = data["layer"]
        if layer is not None:
            count = len(data["inputs"]) - bool(data.get("residual"))  # fuse-residual's shortcut input
            if count < layer.min_inputs or (layer.max_inputs is not None and count > layer.max_inputs):
                problems.append(f"{node}: {data['op']} has {count} inputs")
            if layer.op != data["op"]:
                problems.append(f"{node}: op {data['op']!r} but layer {layer.op!r}")
    for node in graph.graph.get("outputs", []):
        if node not in graph:
            problems.append(f"output {node!r} is not a node")
    problems += _optimisation_problems(graph)
    if problems:
        raise AssertionError("invalid IR:\n  " + "\n  ".join(problems))


def first_error(graph: nx.DiGraph) -> CnnError | None:
    errors = graph.graph.get("errors", [])
    if not errors:
        return None
    head = errors[0]
    head.others = list(errors[1:])
    return head


def dump(graph: nx.DiGraph) -> str:
    """One line per node: the debugging view and the golden-test format.

    ``%name = op[args](inputs) : shape  @line``
    Optimised graphs add the fused ops (``conv[...]+batchnorm+relu``), a ``{...}`` of the
    algorithm (``winograd``) and storage facts (``write_into=%concat1[64:128]``, ``in_place``,
    ``streamed_into=%conv3``, ``eliminated``, ``slot=2``) and, at the end, the aliases and the memory plan.
    """
    memory = graph.graph.get("memory")
    lines = [f"network {graph.graph['name']}"]
    for node in ordered(graph):
        data = graph.nodes[node]
        layer = data["layer"]
        args = ""
        if layer is not None and layer.arguments():
            args = "[" + ", ".join(f"{k}={_text(v)}" for k, v in layer.arguments().items()) + "]"
        fused = "".join(f"+{f['op']}" for f in data.get("fused", []))
        if data.get("activation") and not any(f["op"] == data["activation"] for f in data.get("fused", [])):
            fused += f"+{data['activation']}"
        shape = f" : {format_shape(data['shape'])}" if "shape" in data else ""
        sources = ", ".join(f"%{i}" for i in data["inputs"])
        facts = _storage_facts(graph, node, memory)
        lines.append(f"%{node} = {data['op']}{args}{fused}({sources}){shape}  @{data['span'].line}{facts}")
    lines.append("outputs " + ", ".join(f"%{o}" for o in graph.graph["outputs"]))
    if graph.graph.get("aliases"):
        lines.append("aliases " + ", ".join(f"%{k} -> %{v}" for k, v in graph.graph["aliases"].items()))
    if memory is not None:
        slots = ", ".join(f"{i}: {size}" for i, size in enumerate(memory["slots"]))
        lines.append(f"memory {memory['before']} -> {memory['after']} values per example; slots {slots}")
    return "\n".join(lines)


def _storage_facts(graph: nx.DiGraph, node: str, memory: dict | None) -> str:
    data = graph.nodes[node]
    facts = [data["algorithm"]] if data.get("algorithm") else []
    if "write_into" in data:
        concat, offset = data["write_into"]
        facts.append(f"write_into=%{concat}[{offset}:{offset + data['shape'][0]}]")
    if data.get("in_place"):
        facts.append("in_place")
    if "streamed_into" in data:
        facts.append(f"streamed_into=%{data['streamed_into']}")
    if data.get("eliminated"):
        facts.append("eliminated")
    if memory is not None and node in memory["assign"]:
        facts.append(f"slot={memory['assign'][node]}")
    return f"  {{{', '.join(facts)}}}" if facts else ""


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ACTIVATIONS = EPILOGUE_ACTIVATIONS


def _optimisation_problems(graph: nx.DiGraph) -> list[str]:
    """Invariants of the attributes optimisation passes add (see the module docstring)."""
    problems = []
    for name, target in graph.graph.get("aliases", {}).items():
        if name in graph or target not in graph:
            problems.append(f"alias {name!r} -> {target!r}: must map a removed node to a surviving one")
    for node, data in graph.nodes(data=True):
        op, inputs = data.get("op"), data.get("inputs", [])
        for entry in data.get("fused", []):
            if set(entry) != {"op", "name", "line"} or entry["name"] in graph:
                problems.append(f"{node}: bad fused entry {entry}")
        if "folded" in data:
            layers = data.get("folded_layers", [])
            if op not in ("conv", "conv1d", "fc") or not data["layer"].bias or "original_bias" not in data:
                problems.append(f"{node}: folded into a {op} without bias=true and original_bias")
            if len(layers) != len(data["folded"]) or any(layer.op != "batchnorm" for layer in layers):
                problems.append(f"{node}: folded_layers do not match folded {data['folded']}")
        if data.get("residual") and (op not in ("conv", "batchnorm") or len(inputs) != 2):
            problems.append(f"{node}: a residual on a {op} with {len(inputs)} inputs")
        activation = data.get("activation")
        if activation is not None:
            # (a batchnorm's relu: the training plan's fuse_training, cnnlang/passes/fuse_training.py)
            allowed = ("relu",) if op in ("add", "batchnorm") else _ACTIVATIONS if op in ("conv", "conv1d", "fc") else ()
            if activation not in allowed:
                problems.append(f"{node}: activation {activation!r} on a {op}")
        if "algorithm" in data:
            problems += _algorithm_problems(graph, node)
        if "write_into" in data:
            problems += _write_into_problems(graph, node)
        if data.get("eliminated") and not any("write_into" in graph.nodes[i] for i in inputs):
            problems.append(f"{node}: eliminated, but no input writes into it")
        if data.get("in_place"):
            problems += _in_place_problems(graph, node)
        if "streamed_into" in data:
            problems += _streamed_problems(graph, node)
    memory = graph.graph.get("memory")
    if memory is not None:
        owners = {n for n in graph.nodes if n != graph.graph.get("input") and "write_into" not in graph.nodes[n]
                  and not graph.nodes[n].get("in_place") and "streamed_into" not in graph.nodes[n]}
        if set(memory["assign"]) != owners:
            problems.append(f"memory: slots assigned to {sorted(set(memory['assign']) ^ owners)} wrongly")
        for node, slot in memory["assign"].items():
            if node in graph and memory["slots"][slot] < numel(graph.nodes[node].get("shape") or ()):
                problems.append(f"memory: slot {slot} is too small for {node}")
        if memory["after"] != sum(memory["slots"]):
            problems.append("memory: 'after' is not the sum of the slot sizes")
    return problems


def _streamed_problems(graph: nx.DiGraph, node: str) -> list[str]:
    data, reader = graph.nodes[node], graph.nodes[node]["streamed_into"]
    if (data["op"] != "conv" or list(graph.successors(node)) != [reader] or node in graph.graph.get("outputs", [])
            or "write_into" in data or data.get("in_place")):
        return [f"{node}: streamed_into {reader!r}, which must be its only reader, and it not stored"]
    if graph.nodes[data["inputs"][0]].get("shape") is None or graph.nodes[node].get("shape") is None:
        return []
    reason = why_not_streamed(graph, node, reader)
    return [f"{node}: streamed_into {reader!r}, but {reason}"] if reason else []


def _in_place_problems(graph: nx.DiGraph, node: str) -> list[str]:
    data, inputs = graph.nodes[node], graph.nodes[node]["inputs"]
    if data.get("residual"):
        # the shortcut may have other readers, all run before this conv (a block's first conv)
        source = inputs[1]
        position = {n: i for i, n in enumerate(ordered(graph))}
        private = inputs[0] != source and "write_into" not in graph.nodes[source] and all(
            position[read_where(graph, reader)] <= position[node] for reader in graph.successors(source))
    else:
        source = inputs[0] if len(inputs) == 1 else None
        private = data["layer"] is not None and data["layer"].category == "elementwise" and source is not None and \
            graph.out_degree(source) == 1
    if (not private or source == graph.graph.get("input") or source in graph.graph.get("outputs", [])
            or "write_into" in data):
        return [f"{node}: in_place, but the input it overwrites is read elsewhere or is not its own"]
    return []


def _algorithm_problems(graph: nx.DiGraph, node: str) -> list[str]:
    data = graph.nodes[node]
    if data["algorithm"] != "winograd":
        return [f"{node}: unknown algorithm {data['algorithm']!r}"]
    if data["op"] != "conv":
        return [f"{node}: algorithm {data['algorithm']} on a {data['op']}"]
    if graph.nodes[data["inputs"][0]].get("shape") is None:
        return []
    reason = data["layer"].why_not_winograd(graph.nodes[data["inputs"][0]]["shape"])
    if reason:
        return [f"{node}: algorithm {data['algorithm']} on a conv that is not 3x3, stride 1, undilated, one group ({reason})"]
    return []


def _write_into_problems(graph: nx.DiGraph, node: str) -> list[str]:
    concat, offset = graph.nodes[node]["write_into"]
    if concat not in graph or graph.nodes[concat]["op"] != "concat" or not graph.nodes[concat].get("eliminated"):
        return [f"{node}: writes into {concat!r}, which is not an eliminated concat"]
    inputs = graph.nodes[concat]["inputs"]
    if inputs.count(node) != 1 or list(graph.successors(node)) != [concat] or node in graph.graph["outputs"]:
        return [f"{node}: writes into {concat}, but is not read by it alone, exactly once"]
    expected = sum(graph.nodes[i]["shape"][0] for i in inputs[: inputs.index(node)])
    if offset != expected:
        return [f"{node}: writes into {concat} at channel {offset}, but its slice starts at {expected}"]
    return []
