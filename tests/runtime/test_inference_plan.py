"""The inference plan (runtime/inference.py) on graphs annotated by hand, attribute by attribute,
as the optimisation contract describes them (docs/runtime.md): folded batchnorm, fused
activations, concat elimination (whole, partial, through a scratch buffer), in-place layers and
memory slots. The reference is the unoptimised network with the same parameters; the folding
arithmetic is also checked against NumPy directly."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pytest

import cnnlang
from cnnlang.passes.rewrite import copy_graph
from cnnlang.runtime.fold import BatchNormStatistics, fold_batchnorm
from cnnlang.runtime.inference import InferencePlan

CHAIN = """
network chain {
    input 3x8x8
    conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    conv(5, 3x3, pad = 1) -> batchnorm -> batchnorm(affine = false) -> tanh
    flatten
    fc(6) -> batchnorm -> sigmoid
    fc(3)
}
"""

BRANCHES = """
network branches {
    input 4x6x6
    conv(6, 1x1) -> relu
    concat {
        branch { conv(3, 1x1) }
        branch { conv(2, 3x3, pad = 1) -> relu }
        branch { maxpool(3x3, stride = 1, pad = 1) }
        branch { conv(2, 1x1) }
    }
    relu
    globalavgpool
    fc(3)
}
"""


def remove(graph, node: str, survivor: str) -> None:
    """Drop ``node``; its consumers read ``survivor`` (the contract's aliases and outputs too)."""
    for consumer in list(graph.successors(node)):
        inputs = [survivor if i == node else i for i in graph.nodes[consumer]["inputs"]]
        graph.remove_edge(node, consumer)
        graph.nodes[consumer]["inputs"] = inputs
        graph.add_edge(survivor, consumer, index=[k for k, i in enumerate(inputs) if i == survivor])
    graph.remove_node(node)
    graph.graph.setdefault("aliases", {})[node] = survivor
    graph.graph["outputs"] = [survivor if o == node else o for o in graph.graph["outputs"]]


def fold(graph, node: str, batchnorms: list[str]) -> None:
    data = graph.nodes[node]
    data["original_bias"] = data["layer"].bias
    data["folded"] = list(batchnorms)
    data["folded_layers"] = [graph.nodes[b]["layer"] for b in batchnorms]
    data["layer"] = dataclasses.replace(data["layer"], bias=True)
    for bn in batchnorms:
        remove(graph, bn, node)


def fuse(graph, node: str, activation_node: str) -> None:
    graph.nodes[node]["activation"] = graph.nodes[activation_node]["op"]
    remove(graph, activation_node, node)


def networks(source: str, rng: np.random.Generator, dtype: str = "float32"):
    """(plain network, its original graph copy) with random batchnorm statistics."""
    model = cnnlang.load(source)
    net = model.build(seed=1, dtype=dtype).eval()
    for name, array in net.state().items():
        if name.endswith(("running_mean", "beta")):
            net.set_param(name, rng.normal(0, 0.5, array.shape))
        elif name.endswith(("running_var", "gamma")):
            net.set_param(name, rng.uniform(0.5, 2.0, array.shape))
    return net, copy_graph(model.graph)


def run_both(net, graph, x):
    """The plain network's outputs and the inference plan's, by the original output names."""
    net.forward(x)
    expected = net.outputs()
    plan = InferencePlan(graph, net.dtype, {s.node: s.op for s in net.plan.steps})
    values = plan.forward(np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim > 2 else x.copy(), net.context)
    actual = {name: values[plan.resolve(name)] for name in expected}
    actual = {name: np.moveaxis(v, -1, 1) if v.ndim > 2 else v for name, v in actual.items()}
    return plan, expected, actual


def assert_same(expected, actual, rtol=1e-5):
    for name, reference in expected.items():
        np.testing.assert_allclose(actual[name], reference, rtol=rtol, atol=rtol * np.abs(reference).max())


def test_fold_arithmetic_matches_numpy():
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(4)
    bns = [BatchNormStatistics(rng.normal(size=4), rng.uniform(0.5, 2, 4), 1e-3, rng.normal(size=4), rng.normal(size=4)),
           BatchNormStatistics(rng.normal(size=4), rng.uniform(0.5, 2, 4), 1e-5)]
    x = rng.standard_normal((3, 2, 2))
    y = np.einsum("oikl,ikl->o", w, x) + b
    for bn in bns:
        gamma = 1.0 if bn.gamma is None else bn.gamma
        beta = 0.0 if bn.beta is None else bn.beta
        y = (y - bn.running_mean) / np.sqrt(bn.running_var + bn.eps) * gamma + beta
    w2, b2 = fold_batchnorm(w, b, bns, np.float64)
    np.testing.assert_allclose(np.einsum("oikl,ikl->o", w2, x) + b2, y, rtol=1e-12)
    w3, b3 = fold_batchnorm(w, None, bns[:1], np.float32)
    assert w3.dtype == b3.dtype == np.float32
    np.testing.assert_allclose(b3, -bns[0].running_mean / np.sqrt(bns[0].running_var + 1e-3) * bns[0].gamma + bns[0].beta, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_folded_layers_with_fused_activations_and_memory_slots(dtype):
    rng = np.random.default_rng(1)
    net, graph = networks(CHAIN, rng, dtype)
    fold(graph, "conv1", ["batchnorm1"])
    fuse(graph, "conv1", "relu1")
    fold(graph, "conv2", ["batchnorm2", "batchnorm3"])
    fuse(graph, "conv2", "tanh1")
    fold(graph, "fc1", ["batchnorm4"])
    fuse(graph, "fc1", "sigmoid1")
    # Storages conv1, conv2, flatten1, fc1, fc2 live over steps [1,2], [2,3], [3,4], [4,5], [5,end]:
    # two slots suffice, each as large as its largest tenant (4x8x8 = 256, 5x8x8 = 320 values).
    graph.graph["memory"] = {"slots": [320, 320], "assign": {"conv1": 0, "conv2": 1, "flatten1": 0, "fc1": 1, "fc2": 0},
                             "before": 0, "after": 640}
    x = rng.standard_normal((2, 3, 8, 8)).astype(dtype)
    plan, expected, actual = run_both(net, graph, x)
    assert_same(expected, actual, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert plan.activation_bytes(2) == 640 * 2 * np.dtype(dtype).itemsize
    assert np.shares_memory(plan.values["conv1"], plan.values["flatten1"])
    assert plan.steps[0].op.params["bias"].shape == (4,)  # conv1 had no bias; folding gave it one


def test_concat_written_in_place_by_gemm_strided_and_scratch_producers():
    rng = np.random.default_rng(2)
    net, graph = networks(BRANCHES, rng)
    fuse(graph, "conv3", "relu2")
    concat = "concat1"
    # offsets: conv2 (3 channels) 0, conv3 (2) 3, maxpool1 (6) 5, conv4 (2) 11, copied as usual
    for producer, offset in (("conv2", 0), ("conv3", 3), ("maxpool1", 5)):
        graph.nodes[producer]["write_into"] = (concat, offset)
    graph.nodes[concat]["eliminated"] = True
    graph.nodes["relu3"]["in_place"] = True
    x = rng.standard_normal((2, 4, 6, 6)).astype(np.float32)
    plan, expected, actual = run_both(net, graph, x)
    assert_same(expected, actual)
    steps = {s.node: s for s in plan.steps}
    assert steps[concat].op.written == {0, 1, 2}
    assert steps["conv2"].scratch is None and steps["conv3"].scratch is None  # GEMMs write the slice
    assert steps["maxpool1"].scratch is not None  # maxpool cannot: scratch, then one copy
    assert np.shares_memory(plan.values["conv3"], plan.values[concat])
    assert plan.values["relu3"] is plan.values[concat] or np.shares_memory(plan.values["relu3"], plan.values[concat])


def test_in_place_on_the_network_input_leaves_the_callers_array_alone():
    net = cnnlang.load("network flat { input 10\n relu\n fc(3) }").build(seed=0)
    graph = copy_graph(net.model.graph)
    graph.nodes["relu1"]["in_place"] = True
    x = np.random.default_rng(3).standard_normal((2, 10)).astype(np.float32)
    keep = x.copy()
    _, expected, actual = run_both(net, graph, x)
    assert_same(expected, actual)
    net.forward(x)
    np.testing.assert_array_equal(x, keep)


def test_a_graph_node_the_network_lacks_is_refused():
    net = cnnlang.load(CHAIN).build(seed=0)
    graph = copy_graph(net.model.graph)
    graph = nx.relabel_nodes(graph, {"fc2": "mystery"})
    graph.graph["outputs"] = ["mystery"]
    with pytest.raises(ValueError, match="mystery"):
        InferencePlan(graph, net.dtype, {s.node: s.op for s in net.plan.steps})


SEPARABLE = """
network separable {
    input 16x9x9
    conv(16, 1x1) -> relu
    conv(16, 3x3, stride = 2, pad = 1, groups = 16, bias = false) -> batchnorm -> relu
    conv(24, 1x1) -> batchnorm -> relu
    globalavgpool
    fc(3)
}
"""


def separable(rng: np.random.Generator, dtype: str):
    """SEPARABLE's network and its graph as the passes leave it: batchnorms folded, relus fused,
    the depthwise conv streamed into the 1x1 conv after it."""
    net, graph = networks(SEPARABLE, rng, dtype)
    fold(graph, "conv2", ["batchnorm1"])
    fuse(graph, "conv2", "relu2")
    fold(graph, "conv3", ["batchnorm2"])
    fuse(graph, "conv3", "relu3")
    fuse(graph, "conv1", "relu1")
    graph.nodes["conv2"]["streamed_into"] = "conv3"
    return net, graph


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_streamed_depthwise_conv_runs_inside_its_reader_with_no_buffer(dtype):
    """fuse-depthwise's pair (the depthwise conv's batchnorm folded, both relus fused): the 1x1
    conv's step reads the depthwise conv's input, the depthwise step runs nothing and owns no
    storage, and the input's slot is not reused before the 1x1 conv has read it."""
    rng = np.random.default_rng(4)
    net, graph = separable(rng, dtype)
    # conv1's slot must not take conv3 (its reader through conv2): slots by hand, as plan-memory gives
    graph.graph["memory"] = {"slots": [16 * 81, 24 * 25, 24], "before": 0, "after": 16 * 81 + 24 * 25 + 24,
                             "assign": {"conv1": 0, "conv3": 1, "globalavgpool1": 0, "fc1": 2}}
    x = rng.standard_normal((2, 16, 9, 9)).astype(dtype)
    plan, expected, actual = run_both(net, graph, x)
    assert_same(expected, actual, rtol=1e-5 if dtype == "float32" else 1e-12)
    steps = {s.node: s for s in plan.steps}
    assert steps["conv2"].streamed and steps["conv2"].out is None and "conv2" not in plan.values
    assert steps["conv3"].inputs == ["conv1"] and steps["conv3"].op.depthwise is steps["conv2"].op
    timings: dict[str, float] = {}
    plan.forward(np.ascontiguousarray(np.moveaxis(x, 1, -1)), net.context, timings)
    assert set(timings) == set(steps) - {"conv2"}  # (conv2's time is conv3's)


def test_a_reader_that_cannot_stream_leaves_both_convs_as_written(monkeypatch):
    """Where the 1x1 conv's op declines (here: told to; on the CUDA backend: it has no such
    kernel), the depthwise conv runs into a buffer of its own, which plan-memory did not plan."""
    from cnnlang.runtime.ops.conv import ConvOp

    monkeypatch.setattr(ConvOp, "streams", lambda self, depthwise: False)
    rng = np.random.default_rng(5)
    net, graph = separable(rng, "float32")
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    plan, expected, actual = run_both(net, graph, x)
    assert_same(expected, actual)
    steps = {s.node: s for s in plan.steps}
    assert not steps["conv2"].streamed and steps["conv3"].inputs == ["conv2"] and steps["conv3"].op.depthwise is None
    assert plan.values["conv2"].shape == (2, 5, 5, 16)  # (no memory plan here: every node owns a buffer)
