"""``fuse_training``: the training graph's relus that follow a ``batchnorm`` or an ``add`` run
inside it (node attribute ``activation``), as fuse-activation and fuse-add-relu do for inference.

Training keeps every parameter of the graph as written (no folding); only a relu, which has none,
disappears. Its tensor is then the producer's (``aliases``), and the producer's own
pre-activation value is no longer kept: so the producer's output must have no other consumer and
not be a network output. The runtime's CPU training plan
(runtime/plan.py) runs the result; its ops apply the relu in the same pass and take the relu's
gradient in their backward.
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import absorb, copy_graph, describe, record, why_cannot_absorb

NAME = "fuse-training"
#: the layer ops whose training kernels can end in a relu
PRODUCERS = ("batchnorm", "add")


def fuse_training(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with each relu fused into the batchnorm or add before it, where that
    producer's output is the relu's alone."""
    graph = copy_graph(graph)
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] != "relu":
            continue
        producer = data["inputs"][0]
        if producer == graph.graph["input"] or graph.nodes[producer]["op"] not in PRODUCERS:
            continue
        reason = why_cannot_absorb(graph, producer, graph.nodes[producer]["op"])
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} not fused: {reason}")
            continue
        graph.nodes[producer]["activation"] = "relu"
        record(graph, NAME, "changed", node, f"{describe(graph, node)} fused into {producer} ({describe(graph, producer)})")
        absorb(graph, producer, node)
    return graph
