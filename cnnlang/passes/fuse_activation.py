"""``fuse-activation``: an epilogue activation (a layer type that declares
``epilogue_activation``: relu, tanh, sigmoid) right after a conv or fully connected layer runs
inside that layer's kernel, after the bias (node attribute ``activation``)."""

from __future__ import annotations

import networkx as nx

from .. import ir
from ..layers import EPILOGUE_ACTIVATIONS
from .rewrite import absorb, describe, record, why_anchor_cannot_absorb

NAME = "fuse-activation"
ACTIVATIONS = EPILOGUE_ACTIVATIONS


def fuse_activation(graph: nx.DiGraph) -> nx.DiGraph:
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] not in ACTIVATIONS:
            continue
        producer = data["inputs"][0]
        if graph.nodes[producer]["op"] == "add":
            continue  # fuse-add-relu's business
        reason = _why_not(graph, producer)
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} not fused: {reason}")
            continue
        graph.nodes[producer]["activation"] = data["op"]
        record(graph, NAME, "changed", node, f"{describe(graph, node)} fused into {producer} ({describe(graph, producer)})")
        absorb(graph, producer, node)
    return graph


def _why_not(graph: nx.DiGraph, producer: str) -> str:
    return why_anchor_cannot_absorb(graph, producer)
