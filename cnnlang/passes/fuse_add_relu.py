"""``fuse-add-relu``: the relu at the end of a residual block runs inside the ``add``."""

from __future__ import annotations

import networkx as nx

from .. import ir
from .fuse_activation import ACTIVATIONS
from .rewrite import absorb, describe, record, why_cannot_absorb

NAME = "fuse-add-relu"


def fuse_add_relu(graph: nx.DiGraph) -> nx.DiGraph:
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] not in ACTIVATIONS or graph.nodes[data["inputs"][0]]["op"] != "add":
            continue
        add = data["inputs"][0]
        reason = _why_not(graph, node, add)
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} not fused: {reason}")
            continue
        graph.nodes[add]["activation"] = "relu"
        record(graph, NAME, "changed", node, f"{describe(graph, node)} fused into {add} ({describe(graph, add)})")
        absorb(graph, add, node)
    return graph


def _why_not(graph: nx.DiGraph, node: str, add: str) -> str:
    if graph.nodes[node]["op"] != "relu":
        return "only relu is fused into add"
    return why_cannot_absorb(graph, add, "add")
