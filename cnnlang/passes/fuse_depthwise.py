"""``fuse-depthwise``: a depthwise 3x3 conv whose only reader is a 1x1 conv runs inside it
(node attribute ``streamed_into`` on the depthwise conv, naming the 1x1 conv).

The graph keeps both nodes and its shapes; what changes is where the work happens: the 1x1 conv
computes the depthwise rows chunk by chunk into a small buffer and runs its GEMM on them
(runtime/kernels/cpu/depthwise_pointwise.py), so the depthwise output is never stored. plan-memory
gives the depthwise conv no buffer and keeps its input alive until the 1x1 conv. Why: MobileNet's
depthwise outputs are 2-13 MB each at batch 8, written once and read once, on a machine where
those layers wait on memory (measured in docs/runtime.md).

Eligible: a 2-D depthwise conv (groups = input channels = filters) with a 3x3 kernel over a
multiple of 16 channels (whole vectors of any float type on AVX2 and AVX-512), relu or no
activation, read only by a 1x1, stride-1, unpadded, ungrouped conv with relu or no activation and
no residual. A runtime without the fused kernel (the CUDA backend) runs the two convs as before.
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import describe, record, why_not_private

NAME = "fuse-depthwise"


def fuse_depthwise(graph: nx.DiGraph) -> nx.DiGraph:
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] != "conv" or not is_depthwise(graph, node):
            continue
        reason = why_not_streamed(graph, node)
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} stores its output: {reason}")
            continue
        reader = next(iter(graph.successors(node)))
        data["streamed_into"] = reader
        record(graph, NAME, "changed", node,
               f"{describe(graph, node)} runs inside {reader} ({describe(graph, reader)})")
    return graph


def is_depthwise(graph: nx.DiGraph, node: str) -> bool:
    """Whether conv ``node`` has one group per input channel (more than one)."""
    layer = graph.nodes[node]["layer"]
    channels = graph.nodes[graph.nodes[node]["inputs"][0]]["shape"][0]
    return 1 < layer.groups == channels


def why_not_streamed(graph: nx.DiGraph, node: str) -> str:
    """Why depthwise conv ``node`` cannot run inside the conv that reads it, or ''."""
    reason = why_not_private(graph, node, "its output")
    if reason:
        return reason
    return ir.why_not_streamed(graph, node, next(iter(graph.successors(node))))
