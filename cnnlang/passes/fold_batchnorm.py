"""``fold-batchnorm``: a batchnorm right after a conv or fully connected layer becomes part of
that layer's weights and bias (at inference its statistics are constants).

The node keeps its name; ``folded``/``folded_layers`` list the batchnorms and their layer types,
``original_bias`` says whether the source layer had a bias, and its layer gains ``bias=True``.
The runtime computes W' = W * s, b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps).
"""

from __future__ import annotations

import dataclasses

import networkx as nx

from .. import ir
from .rewrite import absorb, anchor_kind, describe, record, why_anchor_cannot_absorb

NAME = "fold-batchnorm"


def fold_batchnorm(graph: nx.DiGraph) -> nx.DiGraph:
    for node in ir.ordered(graph):
        if graph.nodes[node]["op"] != "batchnorm":
            continue
        producer = graph.nodes[node]["inputs"][0]
        reason = _why_not(graph, node, producer)
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} not folded: {reason}")
            continue
        data = graph.nodes[producer]
        data.setdefault("original_bias", data["layer"].bias)
        data.setdefault("folded", []).append(node)
        data.setdefault("folded_layers", []).append(graph.nodes[node]["layer"])
        data["layer"] = dataclasses.replace(data["layer"], bias=True)
        record(graph, NAME, "changed", node, f"{describe(graph, node)} folded into {producer} ({describe(graph, producer)})")
        absorb(graph, producer, node)
    return graph


def _why_not(graph: nx.DiGraph, node: str, producer: str) -> str:
    """The reason this batchnorm cannot fold into its producer, or '' when it can."""
    reason = why_anchor_cannot_absorb(graph, producer, ", and batchnorm must come before it")
    if reason:
        return reason
    data = graph.nodes[producer]
    channels = getattr(data["layer"], "filters", getattr(data["layer"], "units", None))
    if channels != graph.nodes[node]["shape"][0]:
        return f"the {anchor_kind(data)} gives {channels} channels but the batchnorm normalises {graph.nodes[node]['shape'][0]}"
    return ""
