"""The few graph edits optimisation passes make, kept in one place so aliases, outputs and
edges stay consistent, and the pass log has one format."""

from __future__ import annotations

import copy
from pathlib import Path

import networkx as nx

from .. import ir

# Node attributes whose values passes mutate in place, so a copy must not share them.
_MUTABLE_NODE_KEYS = ("inputs", "fused", "folded", "folded_layers")
_MUTABLE_GRAPH_KEYS = ("outputs", "errors", "pass_log", "optimised", "aliases", "memory", "pooled")


def copy_graph(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy deep enough that editing it never changes ``graph`` (layers and spans are immutable
    and stay shared)."""
    out = nx.DiGraph()
    out.graph.update(graph.graph)
    for key in _MUTABLE_GRAPH_KEYS:
        if key in out.graph:
            out.graph[key] = copy.deepcopy(graph.graph[key])
    for node, data in graph.nodes(data=True):
        fresh = dict(data)
        for key in _MUTABLE_NODE_KEYS:
            if key in fresh:
                fresh[key] = [dict(v) if isinstance(v, dict) else v for v in fresh[key]]
        out.add_node(node, **fresh)
    for source, target, data in graph.edges(data=True):
        out.add_edge(source, target, **{k: list(v) if isinstance(v, list) else v for k, v in data.items()})
    return out


def line_of(graph: nx.DiGraph, node: str) -> int:
    return graph.nodes[node]["span"].line


def where(graph: nx.DiGraph, node: str) -> str:
    """``line 23`` in the model file; for a layer inside a block, the call's line there and the
    block's own line (``line 23 (googlenet_blocks.cnn:9)``), since a block line alone is ambiguous."""
    data = graph.nodes[node]
    span = data["span"]
    if not data["call_stack"]:
        return f"line {span.line}"
    return f"line {data['call_stack'][0].line} ({Path(span.file).name}:{span.line})"


def record(graph: nx.DiGraph, pass_name: str, status: str, node: str, message: str) -> None:
    """Append one entry to the pass log: something ``changed`` or ``skipped`` (declined, and why)."""
    graph.graph.setdefault("pass_log", []).append(
        {"pass": pass_name, "status": status, "node": node, "line": line_of(graph, node), "where": where(graph, node),
         "message": message}
    )


def is_output(graph: nx.DiGraph, node: str) -> bool:
    return node in graph.graph["outputs"]


def describe(graph: nx.DiGraph, node: str) -> str:
    """``conv at line 12``: how reports name a layer."""
    return f"{graph.nodes[node]['op']} at line {line_of(graph, node)}"


def replace_with(graph: nx.DiGraph, node: str, survivor: str) -> None:
    """Remove ``node``, whose tensor ``survivor`` now computes: its consumers read ``survivor``,
    outputs are rewritten and ``aliases`` maps it (and anything aliased to it) to ``survivor``."""
    for consumer in list(graph.successors(node)):
        inputs = graph.nodes[consumer]["inputs"]
        ir.set_inputs(graph, consumer, [survivor if i == node else i for i in inputs])
    graph.remove_node(node)
    aliases = graph.graph.setdefault("aliases", {})
    for name, target in aliases.items():
        if target == node:
            aliases[name] = survivor
    aliases[node] = survivor
    graph.graph["outputs"] = [survivor if o == node else o for o in graph.graph["outputs"]]


def absorb(graph: nx.DiGraph, anchor: str, node: str) -> None:
    """Fuse ``node`` (which reads ``anchor``'s output) into ``anchor`` and remove it."""
    data = graph.nodes[node]
    graph.nodes[anchor].setdefault("fused", []).append({"op": data["op"], "name": node, "line": line_of(graph, node)})
    replace_with(graph, node, anchor)


def why_anchor_cannot_absorb(graph: nx.DiGraph, producer: str, after_activation: str = "") -> str:
    """Why the conv or fully connected ``producer`` cannot take in the layer after it (a
    batchnorm or an activation), or '' when it can: the guards fold-batchnorm and
    fuse-activation share. ``after_activation`` ends the sentence for an anchor that already
    applies an activation."""
    data = graph.nodes[producer]
    layer = data["layer"]
    if layer is None or layer.category != "anchor":
        return f"its input comes from {describe(graph, producer)}, not a conv or fully connected layer"
    return why_cannot_absorb(graph, producer, anchor_kind(data), after_activation)


def why_cannot_absorb(graph: nx.DiGraph, producer: str, what: str, after_activation: str = "") -> str:
    """Why ``producer`` (described as ``what``) cannot take in its single consumer: it already
    ends in an activation, or its output is not the consumer's alone (:func:`why_not_private`)."""
    data = graph.nodes[producer]
    if data.get("activation"):
        return f"the {what} already applies {data['activation']}{after_activation}"
    return why_not_private(graph, producer, f"the {what} output")


def why_not_private(graph: nx.DiGraph, tensor: str, subject: str) -> str:
    """Why node ``tensor``'s value is not its one consumer's to take over -- to fuse into it
    (fold-batchnorm, fuse-activation, fuse-add-relu), to write into a concat's buffer
    (eliminate-concat) or to overwrite in place (plan-memory) -- or '' when it is: the guard
    those passes share. ``subject`` names the value in the reason ("its input")."""
    if tensor == graph.graph["input"]:
        return f"{subject} is the network input, which belongs to the caller"
    users = graph.out_degree(tensor)
    if users > 1:
        return f"{subject} has {users} consumers"
    if is_output(graph, tensor):
        return f"{subject} is also a network output"
    return ""


def anchor_kind(data: dict) -> str:
    return "conv" if data["op"] != "fc" else "fully connected"
