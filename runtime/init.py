"""Initialisation as in the papers: He (Kaiming) normal before ReLU, Xavier (Glorot) uniform before
tanh, sigmoid or no nonlinearity at all; zero biases; batchnorm gamma = 1, beta = 0 with running
mean 0 and variance 1. Weights written in the .cnn file are used as written.

Which nonlinearity a conv or fc layer feeds is found by walking down its first consumer through
layers that do not change the choice (batchnorm, pooling, dropout, add, concat, ...).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from cnnlang import ir

# Layers between a conv/fc and its nonlinearity that do not change which initialisation fits.
_TRANSPARENT = {"batchnorm", "dropout", "maxpool", "avgpool", "globalavgpool", "flatten", "add", "concat", "lrn"}


def nonlinearity_after(graph: nx.DiGraph, node: str) -> str | None:
    """The activation a layer's output meets first ("relu", "tanh", "sigmoid"), or None."""
    current = node
    while True:
        following = ir.consumers(graph, current)
        if not following:
            return None
        current = following[0]
        op = graph.nodes[current]["op"]
        if op in ("relu", "tanh", "sigmoid"):
            return op
        if op not in _TRANSPARENT:
            return None


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel) as PyTorch counts them."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def initial_weight(shape: tuple[int, ...], nonlinearity: str | None, rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = fans(shape)
    if nonlinearity == "relu":
        return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, size=shape)


def initialise(
    graph: nx.DiGraph, params: dict[str, dict[str, np.ndarray]], buffers: dict[str, dict[str, np.ndarray]], seed: int
) -> None:
    """Fill ``params[node][name]`` and ``buffers[node][name]`` in place; the same seed gives the
    same values whatever the dtype (values are drawn in float64)."""
    rng = np.random.default_rng(seed)
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        layer, inputs = data["layer"], [graph.nodes[i]["shape"] for i in data["inputs"]]
        for name, array in params.get(node, {}).items():
            if name == "weight":
                fixed = layer.fixed_weight(inputs[0]) if hasattr(layer, "fixed_weight") else None
                value = fixed if fixed is not None else initial_weight(array.shape, nonlinearity_after(graph, node), rng)
            elif name == "gamma":
                value = np.ones(array.shape)
            else:  # bias, beta
                value = np.zeros(array.shape)
            array[...] = value
        for name, array in buffers.get(node, {}).items():
            array[...] = 1.0 if name == "running_var" else 0.0
