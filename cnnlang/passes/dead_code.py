"""``dead-code``: remove layers that no output depends on."""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import describe, record

NAME = "dead-code"


def eliminate_dead_code(graph: nx.DiGraph) -> nx.DiGraph:
    """Drop every layer from which no output can be reached (the input always stays)."""
    live = set(graph.graph["outputs"]) | {graph.graph["input"]}
    for output in graph.graph["outputs"]:
        live |= nx.ancestors(graph, output)
    for node in ir.ordered(graph):
        if node not in live:
            record(graph, NAME, "changed", node, f"{describe(graph, node)} removed: no output depends on it")
            graph.remove_node(node)
    # A removed tensor that aliased a dead node is computed by nothing now.
    aliases = graph.graph.get("aliases", {})
    for name in [n for n, target in aliases.items() if target not in graph]:
        del aliases[name]
    return graph
