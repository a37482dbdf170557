"""Training-mode fusion (cnnlang/passes/fuse_training.py, run by the CPU plan): which relus it
fuses and which it must leave, which adds run inside a batchnorm before them, which activations
run inside the average pooling after them, and that a fused network computes bit for bit what
the unfused one does: outputs, every node's value that is kept, parameter and input gradients,
running statistics. (Float64 finite differences through the fused ops: tests/runtime/test_network.py's
SMALL_RESIDUAL, whose relus and adds this file checks are fused, and POOLED and ADDS here.)"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang import ir
from cnnlang.passes.fuse_training import fuse_training
from cnnlang.runtime import plan as plan_module

from test_network import SMALL_RESIDUAL, check_network_gradients

# bn -> relu twice and add -> relu fuse; three relus must stay: after a conv (q), after a
# batchnorm whose output is read twice (c), after a batchnorm that is a network output (r).
SOURCE = """
network fusions {
    input 3x6x6
    conv(4, 3x3, pad = 1) -> batchnorm -> relu
    a: conv(4, 3x3, pad = 1)
    from a -> batchnorm -> p: relu
    from a -> conv(4, 1x1) -> q: relu
    from p, q -> add -> s: relu
    from s -> n: batchnorm
    from n -> c: relu
    from n, c -> add -> t: batchnorm
    from t -> r: relu
    from r -> globalavgpool -> g: flatten
    output t, g
}
"""


def test_fuse_training_fuses_private_batchnorm_and_add_relus_only():
    model = cnnlang.load(SOURCE)
    graph = fuse_training(model.graph)
    ir.verify(graph)
    aliases = graph.graph["aliases"]
    # the relus after the first two batchnorms and after the first add
    assert sorted(graph.nodes[t]["op"] for t in aliases.values()) == ["add", "batchnorm", "batchnorm"]
    for relu, producer in aliases.items():
        assert model.graph.nodes[relu]["op"] == "relu" and graph.nodes[producer]["activation"] == "relu"
    kept = [n for n in graph.nodes if graph.nodes[n]["op"] == "relu"]
    assert sorted(kept) == ["c", "q", "r"]  # after n (read twice), after a conv, after t (an output)
    assert {graph.nodes[graph.nodes[n]["inputs"][0]]["op"] for n in kept} == {"conv", "batchnorm"}
    assert all("activation" not in model.graph.nodes[n] for n in model.graph.nodes)  # the model's graph is untouched
    assert set(model.graph.nodes) == set(graph.nodes) | set(aliases)


# tanh -> avgpool over 6 channels, sigmoid -> avgpool over 10, relu -> avgpool 2x2 -> 1x1 fuse (the
# pooling computes them); a tanh before an overlapping pooling and a relu read twice stay.
POOLED = """
network pooled {
    input 3x8x8
    conv(6, 3x3, pad = 1) -> tanh -> avgpool(2x2)
    conv(10, 3x3, pad = 1) -> sigmoid -> b: avgpool(2x2)
    from b -> conv(4, 1x1) -> r: relu -> avgpool(2x2) -> f1: flatten
    from b -> conv(4, 1x1) -> t: tanh -> avgpool(3x3, stride = 1, pad = 1) -> f2: flatten
    from b -> conv(4, 1x1) -> u: relu
    from u -> avgpool(2x2) -> f3: flatten
    from u -> globalavgpool -> f4: flatten
    from f1, f2, f3, f4 -> concat -> fc(3)
}
"""


def test_fuse_training_pools_activations_only_private_and_tiled():
    model = cnnlang.load(POOLED)
    graph = fuse_training(model.graph)
    ir.verify(graph)
    pooled = graph.graph["pooled"]
    assert sorted(model.graph.nodes[a]["op"] for a in pooled) == ["relu", "sigmoid", "tanh"]
    for activation, pool in pooled.items():
        assert graph.nodes[pool]["op"] == "avgpool"
        assert graph.nodes[pool]["input_activation"] == model.graph.nodes[activation]["op"]
        assert graph.nodes[pool]["inputs"] == model.graph.nodes[activation]["inputs"]  # reads the conv
        assert activation not in graph
    assert "r" in pooled and "t" in graph and "u" in graph
    skipped = {entry["node"]: entry["message"] for entry in graph.graph["pass_log"] if entry["status"] == "skipped"}
    assert "overlap" in skipped["t"] and "2 consumers" in skipped["u"]
    odd = fuse_training(cnnlang.load("network odd { input 3x5x5\n conv(4, 1x1) -> t: tanh -> avgpool(2x2) }").graph)
    assert "t" in odd and "pooled" not in odd.graph
    assert any("do not divide the input 5x5" in entry["message"] for entry in odd.graph["pass_log"])


@pytest.mark.parametrize("training", [True, False])
def test_pooled_activations_get_finite_difference_gradients(training):
    rng = np.random.default_rng(5)
    net = cnnlang.load(POOLED).build(seed=3, dtype="float64", input_grad=True).train(training)
    assert sum(s.pooled_by is not None for s in net.plan.steps) == 3
    for name in net.params:  # both sides of the relu's kink
        if name.endswith(".bias"):
            net.params[name][...] = rng.uniform(-0.5, 0.5, net.params[name].shape)
    check_network_gradients(net, rng.standard_normal((2, *net.input_shape)), rng)


# Adds into the batchnorm before them: s1 (with its relu) into b1, s2 (no relu) into b2, whose
# skip is then b1's output (r1 and s1 are b1's now). s3's last input, b3, is read twice, and s4
# has three inputs: both stay.
ADDS = """
network adds {
    input 4x6x6
    a: conv(4, 3x3, pad = 1)
    from a -> b1: batchnorm
    from b1, a -> s1: add -> r1: relu
    from r1 -> conv(4, 3x3, pad = 1) -> b2: batchnorm
    from b2, r1 -> s2: add
    from s2 -> b3: batchnorm
    from b3 -> globalavgpool -> f1: flatten
    from s2, b3 -> s3: add
    from s3 -> b4: batchnorm
    from s3, a, b4 -> s4: add
    from s4 -> globalavgpool -> f2: flatten
    from f1, f2 -> concat -> fc(3)
}
"""


def test_fuse_training_fuses_adds_into_the_private_batchnorm_that_runs_last():
    model = cnnlang.load(ADDS)
    graph = fuse_training(model.graph)
    ir.verify(graph)
    aliases = graph.graph["aliases"]
    assert aliases["s1"] == aliases["r1"] == "b1" and aliases["s2"] == "b2"
    assert graph.nodes["b1"]["inputs"] == ["a", "a"]  # its own input, then the skip
    assert graph.nodes["b1"]["residual"] and graph.nodes["b1"]["activation"] == "relu"
    assert graph.nodes["b2"]["residual"] and "activation" not in graph.nodes["b2"]
    assert graph.nodes["b2"]["inputs"][1] == "b1"
    assert "s3" in graph and "s4" in graph
    assert "residual" not in graph.nodes["b3"] and "residual" not in graph.nodes["b4"]
    skipped = {entry["node"]: entry["message"] for entry in graph.graph["pass_log"] if entry["status"] == "skipped"}
    assert "2 consumers" in skipped["s3"]


@pytest.mark.parametrize("training", [True, False])
def test_adds_fused_into_batchnorms_get_finite_difference_gradients(training):
    rng = np.random.default_rng(6)
    net = cnnlang.load(ADDS).build(seed=3, dtype="float64", input_grad=True).train(training)
    assert sum(s.fused_into is not None and s.op.layer.op == "add" for s in net.plan.steps) == 2
    for name in net.params:  # both sides of the relu's kink
        if name.endswith((".beta", ".bias")):
            net.params[name][...] = rng.uniform(-0.5, 0.5, net.params[name].shape)
    check_network_gradients(net, rng.standard_normal((2, *net.input_shape)), rng)


def build(model, fused: bool, monkeypatch, **kwargs):
    with monkeypatch.context() as patch:
        if not fused:
            patch.setattr(plan_module, "fuse_training", lambda graph: graph)
        return model.build(seed=4, **kwargs)


@pytest.mark.parametrize("source", [SOURCE, SMALL_RESIDUAL, POOLED, ADDS])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_is_bit_for_bit_the_unfused(source, dtype, monkeypatch):
    model = cnnlang.load(source)
    fused = build(model, True, monkeypatch, dtype=dtype, input_grad=True)
    plain = build(model, False, monkeypatch, dtype=dtype, input_grad=True)
    assert any(s.fused_into or s.pooled_by for s in fused.plan.steps)
    assert not any(s.fused_into or s.pooled_by for s in plain.plan.steps)
    rng = np.random.default_rng(0)
    for name in plain.params:  # non-zero betas: both sides of each relu's kink
        value = rng.uniform(-0.5, 0.5, plain.params[name].shape) if name.endswith((".beta", ".bias")) else plain.params[name]
        plain.set_param(name, value)
        fused.set_param(name, value)
    batch = 2 if source == "mobilenet_v1" else 3
    x = rng.standard_normal((batch, *model.input_shape))
    for training in (True, False):
        outputs = []
        for net in (plain, fused):
            net.train(training)
            net.forward(x)
            outs = net.outputs()
            dys = {name: np.random.default_rng(1).standard_normal(v.shape) for name, v in outs.items()}
            dx = net.backward(dys)
            outputs.append((outs, dx, {k: v.copy() for k, v in net.grads.items()}, {k: v.copy() for k, v in net.buffers.items()}))
        (outs_p, dx_p, grads_p, bufs_p), (outs_f, dx_f, grads_f, bufs_f) = outputs
        for name in outs_p:
            np.testing.assert_array_equal(outs_f[name], outs_p[name])
        np.testing.assert_array_equal(dx_f, dx_p)
        for name in grads_p:
            np.testing.assert_array_equal(grads_f[name], grads_p[name], err_msg=name)
        for name in bufs_p:
            np.testing.assert_array_equal(bufs_f[name], bufs_p[name], err_msg=name)
        # every fused activation's value is there, under its own name, and the same (a fused add's
        # own value, before its relu, is not kept: the name holds the relu's)
        for step in fused.plan.steps:
            if (step.fused_into and step.op.layer.op != "add") or step.pooled_by:
                np.testing.assert_array_equal(fused.plan.values[step.node], plain.plan.values[step.node])


def test_small_residual_runs_its_relus_and_adds_fused():
    # what makes test_network's finite differences reach the fused kernels: each block's add and
    # its relu run inside a batchnorm (the identity block's second; the strided block's shortcut
    # batchnorm, which runs after its second), the other relus inside the batchnorms before them
    net = cnnlang.load(SMALL_RESIDUAL).build(dtype="float64")
    fused = {net.plan.graph.nodes[s.fused_into]["op"] for s in net.plan.steps if s.fused_into}
    assert fused == {"batchnorm"}
    assert all(s.op.activation == "relu" for s in net.plan.steps if s.node in {t.fused_into for t in net.plan.steps})
    adds = [s for s in net.plan.steps if s.op.layer.op == "add"]
    assert len(adds) == 2 and all(s.fused_into for s in adds)
    for step in adds:
        norm = net.plan.graph.nodes[step.fused_into]
        assert norm["residual"] and len(norm["inputs"]) == 2
        assert net.plan.graph.nodes[norm["inputs"][1]]["order"] < norm["order"]  # the skip is computed before it


class OneRank:
    """A team of one: the sums over ranks are this rank's."""

    def allreduce(self, array: np.ndarray, what: str) -> None:
        pass


def test_sync_batchnorm_applies_the_relu_fused_into_it():
    from cnnlang.runtime.ops.norm import BatchNormOp
    from cnnlang.train.distributed import SyncBatchNorm

    model = cnnlang.load(SMALL_RESIDUAL)
    plain, synced = (model.build(seed=2, dtype="float64", input_grad=True).train() for _ in range(2))
    wrapped = 0
    for step in synced.plan.steps:
        if type(step.op) is BatchNormOp:
            wrapped += step.op.activation == "relu"
            step.op = SyncBatchNorm(step.op, OneRank())
    assert wrapped >= 3
    rng = np.random.default_rng(3)
    for name in plain.params:
        if name.endswith(".beta"):
            value = rng.uniform(-0.5, 0.5, plain.params[name].shape)
            plain.set_param(name, value)
            synced.set_param(name, value)
    x = rng.standard_normal((3, *model.input_shape))
    y = plain.forward(x)
    np.testing.assert_allclose(synced.forward(x), y, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(synced.backward(dy), plain.backward(dy), rtol=1e-10, atol=1e-12)
    for name in plain.grads:
        np.testing.assert_allclose(synced.grads[name], plain.grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
