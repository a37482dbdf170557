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

Graph attributes: ``name``, ``input`` (the input node), ``outputs`` (primary first), ``scopes``
(path → :class:`Scope` of each block instance or group), ``errors`` (CnnErrors found by passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import networkx as nx

from .errors import CnnError, Span
from .layers import LayerType, format_shape


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
        node, op=op, layer=layer, inputs=list(inputs), span=span, call_stack=call_stack, path=path,
        order=graph.number_of_nodes(),
    )
    for index, source in enumerate(inputs):
        # A tensor used twice by one layer (add(x, x)) keeps one edge; `inputs` keeps both uses.
        if graph.has_edge(source, node):
            graph.edges[source, node]["index"].append(index)
        else:
            graph.add_edge(source, node, index=[index])
    return node


def ordered(graph: nx.DiGraph) -> list[str]:
    """Nodes in creation order, which is a topological order."""
    return sorted(graph.nodes, key=lambda n: graph.nodes[n]["order"])


def consumers(graph: nx.DiGraph, node: str) -> list[str]:
    return sorted(graph.successors(node), key=lambda n: graph.nodes[n]["order"])


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
            count = len(data["inputs"])
            if count < layer.min_inputs or (layer.max_inputs is not None and count > layer.max_inputs):
                problems.append(f"{node}: {data['op']} has {count} inputs")
            if layer.op != data["op"]:
                problems.append(f"{node}: op {data['op']!r} but layer {layer.op!r}")
    for node in graph.graph.get("outputs", []):
        if node not in graph:
            problems.append(f"output {node!r} is not a node")
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
    """
    lines = [f"network {graph.graph['name']}"]
    for node in ordered(graph):
        data = graph.nodes[node]
        layer = data["layer"]
        args = ""
        if layer is not None and layer.arguments():
            args = "[" + ", ".join(f"{k}={_text(v)}" for k, v in layer.arguments().items()) + "]"
        shape = f" : {format_shape(data['shape'])}" if "shape" in data else ""
        sources = ", ".join(f"%{i}" for i in data["inputs"])
        lines.append(f"%{node} = {data['op']}{args}({sources}){shape}  @{data['span'].line}")
    lines.append("outputs " + ", ".join(f"%{o}" for o in graph.graph["outputs"]))
    return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
