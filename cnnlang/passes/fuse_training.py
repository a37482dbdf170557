"""``fuse_training``: the training graph's relus that follow a ``batchnorm`` or an ``add`` run
inside it (node attribute ``activation``), as fuse-activation and fuse-add-relu do for inference;
a two-input ``add`` (with its relu) runs inside a ``batchnorm`` that is one of its inputs (a ResNet
block's last batchnorm: the batchnorm gets the add's other input as its second, ``residual``);
and an activation whose output only an average pooling reads, with windows that tile the image
(LeNet-5's tanh -> avgpool 2x2), runs inside that pooling (node attribute ``input_activation``).

Training keeps every parameter of the graph as written (no folding); only a relu or an add, which
have none, disappear. Its tensor is then the producer's (``aliases``), and the producer's own
pre-activation value is no longer kept: so the producer's output must have no other consumer and
not be a network output. The runtime's CPU training plan
(runtime/plan.py) runs the result; its ops apply the relu in the same pass and take the relu's
gradient in their backward.

A pooled activation keeps its value (the pooling computes it into the activation's buffer: the
graph's ``pooled`` maps the activation to the pooling) and the pooling reads the activation's input;
its backward gives that input's gradient in one pass (runtime/kernels/cpu/activation_pool.py).
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import absorb, copy_graph, describe, record, why_cannot_absorb, why_not_private

NAME = "fuse-training"
#: the layer ops whose training kernels can end in a relu
PRODUCERS = ("batchnorm", "add")
#: the activations an average pooling right after them can take in
POOLED = ("relu", "tanh", "sigmoid")


def fuse_training(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` with each relu fused into the batchnorm or add before it, where that
    producer's output is the relu's alone, then each two-input add into a batchnorm it reads
    (:func:`_add_into_batchnorm`)."""
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
    for node in ir.ordered(graph):
        if graph.nodes[node]["op"] == "add":
            _add_into_batchnorm(graph, node)
    for node in ir.ordered(graph):
        if graph.nodes[node]["op"] == "avgpool":
            _pool_activation(graph, node)
    return graph


def _add_into_batchnorm(graph: nx.DiGraph, add: str) -> None:
    """Fuse two-input ``add`` (and the relu fused into it) into the batchnorm among its inputs that
    runs last, whose output must be the add's alone; the other input, computed before that
    batchnorm (the plan runs layers in the graph's order), becomes the batchnorm's second."""
    inputs = graph.nodes[add]["inputs"]
    if len(inputs) != 2 or inputs[0] == inputs[1]:
        return
    order = {n: graph.nodes[n]["order"] for n in inputs}
    norm = max(inputs, key=order.get)
    if norm == graph.graph["input"] or graph.nodes[norm]["op"] != "batchnorm":
        return
    reason = why_cannot_absorb(graph, norm, "batchnorm")
    if reason:
        record(graph, NAME, "skipped", add, f"{describe(graph, add)} not fused: {reason}")
        return
    skip = inputs[0] if inputs[1] == norm else inputs[1]
    record(graph, NAME, "changed", add, f"{describe(graph, add)} fused into {norm} ({describe(graph, norm)})")
    activation = graph.nodes[add].get("activation")
    if activation:
        graph.nodes[norm]["activation"] = activation
    graph.nodes[norm]["residual"] = True
    ir.set_inputs(graph, norm, [graph.nodes[norm]["inputs"][0], skip])
    absorb(graph, norm, add)


def _pool_activation(graph: nx.DiGraph, pool: str) -> None:
    """Fuse the activation before average pooling ``pool`` into it, where that is allowed."""
    activation = graph.nodes[pool]["inputs"][0]
    if activation == graph.graph["input"] or graph.nodes[activation]["op"] not in POOLED:
        return
    op = graph.nodes[activation]["op"]
    reason = why_not_private(graph, activation, f"the {op} output") or _why_not_tiled(graph, pool)
    if reason:
        record(graph, NAME, "skipped", activation, f"{describe(graph, activation)} not fused: {reason}")
        return
    record(graph, NAME, "changed", activation,
           f"{describe(graph, activation)} fused into {pool} ({describe(graph, pool)}), which computes it")
    graph.nodes[pool]["input_activation"] = op
    ir.set_inputs(graph, pool, list(graph.nodes[activation]["inputs"]))
    graph.remove_node(activation)
    graph.graph.setdefault("pooled", {})[activation] = pool


def _why_not_tiled(graph: nx.DiGraph, pool: str) -> str:
    """Why the pooling's windows do not tile its input exactly (kernel = stride, no padding, sizes
    whole multiples of the kernel), or ''."""
    shape = tuple(graph.nodes[graph.nodes[pool]["inputs"][0]]["shape"])  # C, H, W or C, L
    kernels, strides, pads, _ = graph.nodes[pool]["layer"].geometry(shape)
    if tuple(kernels) != tuple(strides) or any(p for pair in pads for p in pair):
        return "its windows overlap, leave gaps or are padded"
    if any(size % k for size, k in zip(shape[1:], kernels)):
        return f"its {'x'.join(map(str, kernels))} windows do not divide the input {'x'.join(map(str, shape[1:]))}"
    return ""
