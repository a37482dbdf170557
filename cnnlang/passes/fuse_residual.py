"""``fuse-residual``: a residual ``add`` of two tensors runs inside the pointwise conv that
computes one of them, in that conv's epilogue: ``out = f(conv(x) + bias + shortcut)``.

The conv node takes the shortcut as its second input (node attribute ``residual``) and the add's
activation (``activation``); the add is removed. Without it, a 1x1 conv's output is written by the
GEMM, read and written again by the bias pass and read once more by the add: the epilogue that
takes the shortcut in the same pass saves one read and one write of the block's output (the end
of every bottleneck in ResNet-50/101/152). Only pointwise convs (1x1, stride 1, no padding) take
it: other convs apply their epilogue per chunk inside the conv kernel, where the sum would not
save a pass.
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import describe, line_of, record, replace_with, why_cannot_absorb

NAME = "fuse-residual"


def fuse_residual(graph: nx.DiGraph) -> nx.DiGraph:
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] != "add":
            continue
        reasons = [why_not_residual(graph, node, conv) for conv in data["inputs"]]
        if len(data["inputs"]) != 2 or data["inputs"][0] == data["inputs"][1]:
            reasons = ["it does not sum two different tensors"]
        elif "" in reasons:
            _fuse(graph, node, data["inputs"][reasons.index("")])
            continue
        record(graph, NAME, "skipped", node, f"{describe(graph, node)} not fused: {'; '.join(dict.fromkeys(reasons))}")
    return graph


def why_not_residual(graph: nx.DiGraph, add: str, conv: str) -> str:
    """Why the add cannot run inside its input ``conv``, or ''."""
    data = graph.nodes[conv]
    if data["op"] != "conv":
        return f"its input {conv} is not a conv ({data['op']})"
    layer = data["layer"]
    kernels, strides, pads, _ = layer.geometry(graph.nodes[data["inputs"][0]]["shape"])
    if set(kernels) != {1} or set(strides) != {1} or any(p for pair in pads for p in pair):
        return f"{conv} is not pointwise (1x1, stride 1, no padding)"
    if data.get("residual"):
        return f"{conv} already adds a residual"
    return why_cannot_absorb(graph, conv, f"conv {conv}")


def _fuse(graph: nx.DiGraph, add: str, conv: str) -> None:
    data, add_data = graph.nodes[conv], graph.nodes[add]
    shortcut = next(i for i in add_data["inputs"] if i != conv)
    ir.set_inputs(graph, conv, [data["inputs"][0], shortcut])
    data["residual"] = True
    # The conv now runs where the add did: after the shortcut (creation order stays topological).
    data["order"] = add_data["order"]
    if add_data.get("activation"):
        data["activation"] = add_data["activation"]
    data.setdefault("fused", []).append({"op": "add", "name": add, "line": line_of(graph, add)})
    data["fused"] += add_data.get("fused", [])
    record(graph, NAME, "changed", add, f"{describe(graph, add)} fused into {conv} ({describe(graph, conv)})")
    replace_with(graph, add, conv)
