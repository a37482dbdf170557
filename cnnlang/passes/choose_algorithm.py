"""``winograd``: run eligible 3x3 convolutions as Winograd F(2x2, 3x3) at inference (node
attribute ``algorithm = "winograd"``; the kernel is runtime/kernels/cpu/winograd.py).

Eligible: a 2-D ``conv`` with a 3x3 kernel, stride 1, dilation 1 and one group (any padding).
Among those, the pass keeps im2col where Winograd measured no faster on this machine
(benchmarks/bench_winograd.py, float32; the table is in docs/passes.md): with fewer than
``MIN_CHANNELS`` input or output channels the 16 GEMMs are too thin for BLAS and the transforms
dominate (3 -> 64 channels: 0.54x, 16 -> 32: 0.86x, 32 -> 64: 1.02x), while from 64 channels on
it won on every shape measured, 7x7 outputs included (1.4-1.9x).
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from ..layers.conv import Conv
from .rewrite import describe, record

NAME = "winograd"
ALGORITHM = Conv.WINOGRAD

#: Fewest input and output channels where Winograd F(2x2) clearly beat im2col (bench_winograd.py).
MIN_CHANNELS = 64


def choose_winograd(graph: nx.DiGraph) -> nx.DiGraph:
    """Mark every conv that Winograd computes faster with ``algorithm = "winograd"``; record the
    others with the reason."""
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] not in ("conv", "conv1d"):
            continue
        reason = why_not_winograd(graph, node) or _why_not_faster(graph, node)
        if reason:
            record(graph, NAME, "skipped", node, f"{describe(graph, node)} keeps im2col: {reason}")
            continue
        data["algorithm"] = ALGORITHM
        channels, height, width = data["shape"]
        inputs = graph.nodes[data["inputs"][0]]["shape"][0]
        record(graph, NAME, "changed", node,
               f"{describe(graph, node)} runs as Winograd F(2x2, 3x3) ({inputs} -> {channels} channels, {height}x{width})")
    return graph


def why_not_winograd(graph: nx.DiGraph, node: str) -> str:
    """Why the conv ``node`` cannot run as Winograd F(2x2, 3x3) at all ("" when it can): the
    layer's own rule (``Conv.why_not_winograd``), which ``ir.verify`` checks too."""
    data = graph.nodes[node]
    return data["layer"].why_not_winograd(graph.nodes[data["inputs"][0]]["shape"])


def _why_not_faster(graph: nx.DiGraph, node: str) -> str:
    data = graph.nodes[node]
    inputs, outputs = graph.nodes[data["inputs"][0]]["shape"][0], data["shape"][0]
    if min(inputs, outputs) < MIN_CHANNELS:
        side = "input" if inputs < MIN_CHANNELS else "output"
        return (f"{inputs} -> {outputs} channels: {min(inputs, outputs)} {side} channels, fewer than {MIN_CHANNELS}, "
                "where Winograd measured no faster (benchmarks/bench_winograd.py)")
    return ""
