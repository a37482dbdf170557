"""Initialisation as in the papers, by each layer type's own rule (``LayerType.initial_value``,
``weight_init_before``): a conv or fc weight is He (Kaiming) normal when its output meets a ReLU
(or PReLU, with its negative slope) first, Xavier (Glorot) uniform before tanh, sigmoid or no
nonlinearity at all; biases start at zero; batchnorm gamma = 1, beta = 0 with running mean 0 and
variance 1. Weights written in the .cnn file are used as written.

Which nonlinearity a conv or fc layer feeds is found by walking down its first consumer through
layers that leave the choice to the next one (batchnorm, pooling, dropout, add, concat, ...).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from cnnlang import ir
from cnnlang.layers import LayerType


def nonlinearity_after(graph: nx.DiGraph, node: str) -> str | None:
    """The op of the layer that decides a node's initialisation (see :func:`deciding_layer`)."""
    layer = deciding_layer(graph, node)
    return None if layer is None else layer.op


def deciding_layer(graph: nx.DiGraph, node: str) -> LayerType | None:
    """The first layer a node's output meets whose ``weight_init_before`` is not
    "look-through", or None when there is none."""
    current = node
    while True:
        following = ir.consumers(graph, current)
        if not following:
            return None
        current = following[0]
        layer = graph.nodes[current]["layer"]
        if layer.weight_init_before != "look-through":
            return layer


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel) as PyTorch counts them."""
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def initial_weight(shape: tuple[int, ...], before: LayerType | None, rng: np.random.Generator) -> np.ndarray:
    """He normal for a layer type whose rule is "he" (gain sqrt(2 / (1 + slope^2))), else Xavier
    uniform."""
    fan_in, fan_out = fans(shape)
    if before is not None and before.weight_init_before == "he":
        return rng.normal(0.0, math.sqrt(2.0 / ((1 + before.negative_slope**2) * fan_in)), size=shape)
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
            constant = layer.initial_value(name)
            if constant is not None:
                array[...] = constant
                continue
            fixed = layer.fixed_weight(inputs[0]) if hasattr(layer, "fixed_weight") else None
            array[...] = fixed if fixed is not None else initial_weight(array.shape, deciding_layer(graph, node), rng)
        for name, array in buffers.get(node, {}).items():
            array[...] = layer.initial_value(name)
