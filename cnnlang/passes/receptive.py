"""Receptive fields: how many input pixels along each axis can influence one output value.

Along a path r_out = r_in + (k - 1) * j_in and j_out = j_in * s, where j is the input-pixel
distance between neighbouring outputs (the jump). Where paths join, the widest field wins.
Layers that see the whole input (fully connected, global pooling) have at least the input's
full extent. Fields are not clipped to the image: a field wider than the input means padding.
"""

from __future__ import annotations

import networkx as nx

from .. import ir


def receptive_field(graph: nx.DiGraph) -> nx.DiGraph:
    source = graph.graph["input"]
    extent = tuple(graph.nodes[source]["shape"][1:])
    graph.nodes[source].update(rf=(1,) * len(extent), jump=(1,) * len(extent))
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        inputs = [graph.nodes[i] for i in data["inputs"]]
        if data.get("shape") is None or any("rf" not in i for i in inputs):
            continue
        rf = tuple(max(axis) for axis in zip(*(i["rf"] for i in inputs)))
        jump = tuple(max(axis) for axis in zip(*(i["jump"] for i in inputs)))
        window = data["layer"].window([i["shape"] for i in inputs])
        if window == "global" or len(data["shape"]) < 2:
            # The whole input, or more where padding already widened the field upstream.
            rf = tuple(max(r, e) for r, e in zip(rf, extent))
        elif window is not None:
            kernels, strides = window
            rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernels, jump))
            jump = tuple(j * s for j, s in zip(jump, strides))
        data["rf"], data["jump"] = rf, jump
    return graph
