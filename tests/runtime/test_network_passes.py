"""``Model.build(passes=...)``: eval mode runs the optimised graph, training the original one,
and the optimised parameters follow every change to the original ones."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.passes.optimise import PASS_NAMES

SOURCE = """
network folded {
    input 3x8x8
    conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    concat {
        branch { conv(3, 1x1) -> batchnorm -> relu }
        branch { conv(2, 3x3, pad = 1) -> relu }
    }
    globalavgpool
    flatten
    fc(6) -> batchnorm -> dropout(0.5)
    fc(3) -> relu
}
"""


@pytest.fixture
def model():
    return cnnlang.load(SOURCE)


def pair(model, rng, **build):
    """An unoptimised and an optimised network with the same random parameters and statistics."""
    plain = model.build(seed=3, **build)
    fast = model.build(seed=3, passes="all", **build)
    for name, value in plain.state().items():
        if name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, value.shape)
        elif name.endswith(("running_mean", "beta", "gamma")):
            value = rng.normal(0.5, 0.5, value.shape)
        plain.set_param(name, value)
        fast.set_param(name, value)
    return plain, fast


def agree(plain, fast, x):
    np.testing.assert_allclose(fast.eval().forward(x), plain.eval().forward(x), rtol=1e-5, atol=1e-6)


def test_pass_selection(model):
    assert model.build().inference_plan is None
    assert model.build(passes="none").inference_plan is None and model.build(passes=[]).passes == []
    assert model.build(passes="all").passes == list(PASS_NAMES)
    assert model.build(passes=["plan-memory", "inference"]).passes == ["inference", "plan-memory"]
    assert model.build(passes="inference,dead-code").passes == ["inference", "dead-code"]
    with pytest.raises(ValueError, match="unknown pass 'fast'; the passes are: inference"):
        model.build(passes=["fast"])


def test_outputs_keep_their_original_names(model):
    rng = np.random.default_rng(0)
    plain, fast = pair(model, rng)
    x = rng.standard_normal((2, 3, 8, 8))
    agree(plain, fast, x)
    # the output relu ran inside fc2, yet it is still reported as relu
    assert fast.inference_plan.resolve("relu4") == "fc2"
    assert fast.output_names == ["relu4"] and list(fast.outputs()) == ["relu4"]
    np.testing.assert_allclose(fast.outputs()["relu4"], plain.outputs()["relu4"], rtol=1e-5, atol=1e-6)


def test_changes_to_parameters_reach_the_folded_weights(model, tmp_path):
    rng = np.random.default_rng(1)
    plain, fast = pair(model, rng)
    x = rng.standard_normal((2, 3, 8, 8))
    agree(plain, fast, x)
    for net in (plain, fast):  # set_param
        net.set_param("batchnorm1.gamma", np.full(4, 3.0))
    agree(plain, fast, x)
    plain.set_param("batchnorm2.running_mean", np.full(3, -1.0))  # load
    plain.save(tmp_path / "w.npz")
    fast.load(tmp_path / "w.npz")
    agree(plain, fast, x)
    for net in (plain, fast):  # an in-place edit in eval mode, then refresh()
        net.params["conv1.weight"] *= 0.5
    fast.refresh()
    agree(plain, fast, x)


def test_a_training_step_then_eval_uses_the_new_weights_and_statistics(model):
    rng = np.random.default_rng(2)
    plain, fast = pair(model, rng)
    x = rng.standard_normal((4, 3, 8, 8))
    dy = rng.standard_normal((4, 3))
    fast.eval().forward(x)  # the folded weights are computed, then go stale in training
    for net in (plain, fast):
        net.train()
        net.context.rng = np.random.default_rng(9)  # the same dropout mask
        net.forward(x)
        net.backward(dy)
        for name in net.trainable:
            net.params[name] -= 0.1 * net.grads[name]
    # training ran the original plan, which keeps every node's value
    assert set(fast.plan.values) == set(model.graph.nodes)
    for name in plain.grads:
        np.testing.assert_allclose(fast.grads[name], plain.grads[name], rtol=1e-5, atol=1e-7)
    agree(plain, fast, x)


def test_backward_after_an_optimised_forward_says_what_to_do(model):
    net = model.build(passes="all").eval()
    y = net.forward(np.zeros((2, 3, 8, 8)))
    with pytest.raises(RuntimeError, match=r"network.train\(\) before forward, or build the network without passes"):
        net.backward(np.ones_like(y))
    net.train().forward(np.zeros((2, 3, 8, 8)))
    net.backward(np.ones_like(y))  # fine in training mode


def test_activation_bytes(model):
    net = model.build(passes="all")
    plain_bytes = net.activation_bytes(2, optimised=False)
    assert plain_bytes == model.build().activation_bytes(2)
    # one buffer per node the training plan runs: a relu fused into its batchnorm or add has none
    graph = net.plan.graph
    assert set(graph.graph["aliases"]) == {n for n in model.graph.nodes if n not in graph}  # what fuse_training removed
    expected = sum(np.prod(graph.nodes[n]["shape"]) for n in graph.nodes if n != "input") * 2 * 4
    assert plain_bytes == expected
    memory = net.inference_plan.graph.graph["memory"]
    assert net.activation_bytes(2) == memory["after"] * 2 * 4 < plain_bytes
    with pytest.raises(ValueError, match="without passes"):
        model.build().activation_bytes(2, optimised=True)


def test_the_inference_plan_shares_one_conv_workspace(model):
    net = model.build(passes="all").eval()
    net.forward(np.zeros((2, 3, 8, 8)))
    convs = [s.op for s in net.inference_plan.steps if s.op.layer.op == "conv"]
    shared = list(net.inference_plan.workspaces.values())
    assert len(convs) == 3 and len(shared) == 1 and all(op.workspace is shared[0] for op in convs)
    for step in net.plan.steps:
        if step.op.layer.op == "conv":
            step.op.workspace.blocked = False  # the same kernels (im2col) as inference, so the bytes compare
    net.train().forward(np.zeros((2, 3, 8, 8)))
    own = {id(s.op.workspace) for s in net.plan.steps if s.op.layer.op == "conv"}
    assert len(own) == 3  # training keeps one per layer (backward reuses its forward's buffers)
    assert 0 < net.inference_plan.workspace_bytes() <= net.plan.workspace_bytes()


def test_a_winograd_conv_keeps_only_its_packed_transformed_weight():
    """On the CPU the inference plan keeps Winograd's U as the GEMMs' panels only (the kernel reads
    nothing else), and counts those in workspace_bytes; the result is the unoptimised network's."""
    model = cnnlang.load("""network wg {
        input 64x6x6
        w: conv(76, 3x3, pad = 1) -> relu
        globalavgpool
        fc(3)
    }""")
    net = model.build(passes="all", dtype="float32", seed=1).eval()
    x = np.random.default_rng(0).standard_normal((2, 64, 6, 6)).astype(np.float32)
    y = net.forward(x).copy()
    plan = net.inference_plan
    (op,) = [s.op for s in plan.steps if s.op.layer.op == "conv"]
    assert op.algorithm == "winograd" and op.prepared_weight is None
    assert op.winograd_panels.size == 16 * 64 * 80  # 76 outputs: 4 panels of 16 and one of 12 padded to 16
    scratch = sum(w.nbytes for w in plan.workspaces.values())
    assert plan.workspace_bytes() - scratch == op.prepared_bytes() == op.winograd_panels.nbytes
    plain = model.build(dtype="float32", seed=1).eval().forward(x)
    np.testing.assert_allclose(y, plain, rtol=1e-4, atol=1e-5)


def test_inference_workspace_bytes_count_what_bound_steps_packed():
    """A classifier after a global pool, large enough for pointwise.py's fused GEMM, packs its
    weight into panels when the plan binds it: those count too, once bound."""
    net = cnnlang.load("""network head {
        input 256x2x2
        globalavgpool
        fc(600) -> relu
    }""").build(passes="all", dtype="float32").eval()
    plan = net.inference_plan
    before = plan.workspace_bytes()
    net.forward(np.zeros((8, 256, 2, 2), np.float32))
    (fc,) = [run for step, run in zip(plan.steps, plan._runs) if step.op.layer.op == "fc"]
    assert len(fc.held) == 2 and fc.held[0].size >= 600 * 256  # the panels (and the padded bias)
    scratch = sum(w.nbytes for w in plan.workspaces.values())
    assert plan.workspace_bytes() == before + scratch + sum(a.nbytes for a in fc.held)


def test_inference_workspace_bytes_count_the_packed_weights():
    """A 1x1 conv on pointwise.py's tile holds its weight packed in whole 16-lane panels (10
    outputs padded to 16) and a padded bias: workspace_bytes counts them beside the scratch."""
    net = cnnlang.load("""network pw {
        input 8x6x6
        conv(10, 1x1) -> relu
        flatten
        fc(3)
    }""").build(passes="all", dtype="float32").eval()
    net.forward(np.zeros((1, 8, 6, 6)))
    plan = net.inference_plan
    panels = [s.op.panels for s in plan.steps if getattr(s.op, "panels", None) is not None]
    assert len(panels) == 1
    scratch = sum(w.nbytes for w in plan.workspaces.values())
    assert plan.workspace_bytes() - scratch >= sum(a.nbytes for a in panels[0]) > 10 * 8 * 4
