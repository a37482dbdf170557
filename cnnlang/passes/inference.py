"""``inference``: what changes when the network only predicts. Dropout is the identity, so it
goes; batchnorm normalises by its running statistics, which later lets it fold into weights."""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import describe, record, replace_with

NAME = "inference"


def simplify_inference(graph: nx.DiGraph) -> nx.DiGraph:
    """Remove every dropout (its consumers read its input) and note batchnorm's statistics."""
    source = graph.graph["input"]
    batchnorms = [n for n in ir.ordered(graph) if graph.nodes[n]["op"] == "batchnorm"]
    if batchnorms:
        # One entry, not one per layer: nothing changes in the graph itself.
        more = f" and {len(batchnorms) - 1} more" if len(batchnorms) > 1 else ""
        record(graph, NAME, "changed", batchnorms[0], f"{describe(graph, batchnorms[0])}{more} normalise by running statistics")
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] == "dropout":
            producer = data["inputs"][0]
            if producer == source and node in graph.graph["outputs"]:
                # Removing it would make the caller's own input array an output.
                record(graph, NAME, "skipped", node, f"{describe(graph, node)} kept: it turns the network input into an output")
                continue
            record(graph, NAME, "changed", node, f"{describe(graph, node)} removed: the identity at inference")
            replace_with(graph, node, producer)
    return graph
