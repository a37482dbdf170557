"""Costs per example: parameters (trainable or frozen), buffers, multiply-accumulates and
activation sizes, annotated on each node and totalled in ``graph.graph["totals"]``."""

from __future__ import annotations

import math

import networkx as nx

from .. import ir

BYTES_PER_VALUE = 4  # float32


def count_costs(graph: nx.DiGraph) -> nx.DiGraph:
    totals = dict(params=0, trainable=0, buffers=0, macs=0, activations=0)
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data.get("shape") is None:
            continue
        layer = data["layer"]
        data["activations"] = math.prod(data["shape"])
        totals["activations"] += data["activations"]
        if layer is None:
            data.update(params=0, trainable=0, buffers=0, macs=0)
            continue
        inputs = [graph.nodes[i]["shape"] for i in data["inputs"]]
        params = sum(math.prod(s) for s in layer.param_shapes(inputs).values())
        data["params"] = params
        data["trainable"] = params if layer.trainable else 0
        data["buffers"] = sum(math.prod(s) for s in layer.buffer_shapes(inputs).values())
        data["macs"] = layer.macs(inputs, data["shape"])
        for key in ("params", "trainable", "buffers", "macs"):
            totals[key] += data[key]
    totals["activation_bytes"] = totals["activations"] * BYTES_PER_VALUE
    graph.graph["totals"] = totals
    return graph
