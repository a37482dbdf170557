"""Warnings about what a model probably did not mean; they stop nothing.

Both come from one rule of the language: a label names the layer it is written on, so in
``mid: conv(...) -> relu`` ``mid`` is the conv. Read as naming the chain's end, it makes
``from mid`` skip the relu (reported here where it happens), and the relu, if nothing else uses
it, is dropped by the optimiser (reported as a tensor nothing uses).
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from ..errors import CnnError, Span


def _label(data: dict) -> str:
    return data["layer"].label() if data["layer"] is not None else data["op"]


def _in_blocks(graph: nx.DiGraph, data: dict, warning: CnnError) -> CnnError:
    for call, block in ir.enclosing_calls(graph, data["path"], data["call_stack"]):
        warning.with_note(call, f"in block '{block}' used here")
    return warning


def lint(graph: nx.DiGraph) -> nx.DiGraph:
    """Set ``graph.graph["warnings"]`` (``severity`` "warning"), one per source location: a
    computed tensor that nothing uses and that is not an output, and a reference by label to the
    first layer of a longer chain."""
    outputs = set(graph.graph["outputs"])
    heads = {head: (name, end) for end, (name, head) in graph.graph.get("labelled_heads", {}).items()}
    ends = {end: (name, head) for head, (name, end) in heads.items()}
    warnings: dict[Span, CnnError] = {}
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        if data["span"] in warnings:
            continue  # one warning per place in the source, though a block is used many times
        if not graph.out_degree(node) and node not in outputs:
            warning = CnnError(f"'{node}' ({_label(data)}) is computed but never used and is not an output, "
                               "so it is dropped", data["span"], severity="warning")
            if node in ends:
                name, head = ends[node]
                warning.with_note(graph.nodes[head]["span"], f"'{name}' names the first layer of this chain, not "
                                  "its end; to name the end, put the label on the last layer")
            warnings[data["span"]] = _in_blocks(graph, data, warning)
        for source in data["inputs"]:
            if source not in heads or ir.consumers(graph, source)[0] == node:
                continue  # the chain's own next layer, not a reference by label
            name, end = heads[source]
            warning = CnnError(
                f"'{name}' names the {_label(graph.nodes[source])} that starts its chain, not the chain's end "
                f"('{end}'); to read the end, put the label on the last layer (to read the "
                f"{graph.nodes[source]['op']}, end the chain after it)", data["span"], severity="warning")
            warning.with_note(graph.nodes[source]["span"], f"'{name}' labels this layer")
            warnings.setdefault(data["span"], _in_blocks(graph, data, warning))
    for output in graph.graph["outputs"]:
        if output in heads:
            name, end = heads[output]
            data = graph.nodes[output]
            warnings.setdefault(data["span"], _in_blocks(graph, data, CnnError(
                f"the output '{name}' is the {_label(data)} that starts its chain, not the chain's end ('{end}'); "
                f"to output the end, put the label on the last layer", data["span"], severity="warning")))
    graph.graph["warnings"] = list(warnings.values())
    return graph
