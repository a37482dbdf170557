"""Each pass declines exactly where it must, and says why, naming the line."""

from __future__ import annotations

import pytest

import cnnlang
from cnnlang import ir
from cnnlang.passes.dead_code import eliminate_dead_code
from cnnlang.passes.optimise import optimise
from cnnlang.passes.rewrite import copy_graph


def optimised(source: str, *names: str):
    return optimise(cnnlang.load(source).graph, names or None)


def messages(graph, pass_name: str, status: str = "skipped") -> list[str]:
    return [e["message"] for e in graph.graph["pass_log"] if e["pass"] == pass_name and e["status"] == status]


def test_batchnorm_does_not_fold_into_a_conv_with_two_consumers():
    graph = optimised("""network n {
    input 3x8x8
    c: conv(4, 3x3, pad = 1)
    b: batchnorm
    from c -> d: relu
    output b, d
}""", "fold-batchnorm")
    assert messages(graph, "fold-batchnorm") == ["batchnorm at line 4 not folded: the conv output has 2 consumers"]
    assert "b" in graph and "folded" not in graph.nodes["c"]


def test_batchnorm_does_not_fold_into_a_network_output_or_a_pool():
    graph = optimised("""network n {
    input 3x8x8
    c: conv(4, 3x3)
    b: batchnorm
    maxpool(2x2) -> q: batchnorm
    output c, q
}""", "fold-batchnorm")
    assert messages(graph, "fold-batchnorm") == [
        "batchnorm at line 4 not folded: the conv output is also a network output",
        "batchnorm at line 5 not folded: its input comes from maxpool at line 5, not a conv or fully connected layer",
    ]


def test_fold_records_the_layers_and_the_original_bias():
    graph = optimised("network n { input 3x8x8\n conv(4, 1x1, bias = false) -> batchnorm(eps = 0.001) }", "fold-batchnorm")
    data = graph.nodes["conv1"]
    assert data["folded"] == ["batchnorm1"] and data["folded_layers"][0].eps == 0.001
    assert data["original_bias"] is False and data["layer"].bias is True
    assert data["fused"] == [{"op": "batchnorm", "name": "batchnorm1", "line": 2}]
    assert graph.graph["aliases"] == {"batchnorm1": "conv1"} and graph.graph["outputs"] == ["conv1"]


def test_fc_then_batchnorm_folds_and_the_activation_fuses_after_it():
    graph = optimised("network n { input 8\n fc(4) -> batchnorm -> sigmoid\n fc(2) }")
    assert graph.nodes["fc1"]["folded"] == ["batchnorm1"] and graph.nodes["fc1"]["activation"] == "sigmoid"
    assert [f["op"] for f in graph.nodes["fc1"]["fused"]] == ["batchnorm", "sigmoid"]


def test_activation_declines_shared_or_output_producers():
    graph = optimised("""network n {
    input 3x8x8
    c: conv(4, 3x3)
    r: relu
    from c -> t: tanh
    m: maxpool(2x2) -> relu
    output r, t, m
}""", "fuse-activation")
    assert messages(graph, "fuse-activation") == [
        "relu at line 4 not fused: the conv output has 2 consumers",
        "tanh at line 5 not fused: the conv output has 2 consumers",
        "relu at line 6 not fused: its input comes from maxpool at line 6, not a conv or fully connected layer",
    ]


def test_only_relu_fuses_into_add():
    source = """network n {
    input 4x8x8
    residual { conv(4, 3x3, pad = 1) }
    ACT
    fc(2)
}"""
    graph = optimised(source.replace("ACT", "tanh"), "fuse-add-relu")
    assert messages(graph, "fuse-add-relu") == ["tanh at line 4 not fused: only relu is fused into add"]
    graph = optimised(source.replace("ACT", "relu"), "fuse-add-relu")
    assert graph.nodes["add1"]["activation"] == "relu" and graph.graph["aliases"] == {"relu1": "add1"}


def test_concat_copies_inputs_it_cannot_take_over():
    graph = optimised("""network n {
    input 4x8x8
    s: conv(4, 1x1)
    k: concat {
        branch { conv(2, 1x1) }
        branch { }
    }
    from s -> t: conv(3, 1x1)
    from s, t, t -> j: concat
    output k, j
}""", "eliminate-concat")
    assert graph.nodes["conv1"]["write_into"] == ("k", 0)
    assert "write_into" not in graph.nodes["s"] and "write_into" not in graph.nodes["t"]
    assert messages(graph, "eliminate-concat") == [
        "conv at line 3 copied into k (concat at line 4): its output has 4 consumers",
        "conv at line 3 copied into j (concat at line 9): its output has 4 consumers",
        "conv at line 8 copied into j (concat at line 9): the concat uses it more than once",
        "conv at line 8 copied into j (concat at line 9): the concat uses it more than once",
    ]
    assert graph.nodes["k"]["eliminated"] and "eliminated" not in graph.nodes["j"]


def test_in_place_needs_a_private_input():
    graph = optimised("""network n {
    input 3x8x8
    relu
    m: maxpool(2x2)
    s: sigmoid
    from m -> t: tanh
    output s, t
}""", "plan-memory")
    assert messages(graph, "plan-memory") == [
        "relu at line 3 not in place: its input is the network input, which belongs to the caller",
        "sigmoid at line 5 not in place: its input has 2 consumers",
        "tanh at line 6 not in place: its input has 2 consumers",
    ]


def test_dead_code_removes_what_no_output_needs():
    graph = optimised("""network n {
    input 8
    h: fc(16)
    side: fc(4) -> sigmoid
    from h -> main: fc(3)
    output main
}""", "dead-code")
    assert set(graph.nodes) == {"input", "h", "main"}
    assert messages(graph, "dead-code", "changed") == [
        "fc at line 4 removed: no output depends on it", "sigmoid at line 4 removed: no output depends on it"]


def test_dead_code_drops_aliases_of_dead_nodes():
    graph = copy_graph(optimised("network n { input 8\n a: fc(4) -> r: relu\n from a -> b: fc(2)\n output b, r }", "fuse-activation"))
    assert graph.graph["aliases"] == {}  # relu1 is an output, so a keeps it (declined)
    graph = optimised("network n { input 8\n a: fc(4) -> dropout\n b: fc(2)\n output b }", "inference")
    graph.graph["outputs"] = ["input"]  # now nothing is live
    graph = eliminate_dead_code(graph)
    ir.verify(graph)
    assert set(graph.nodes) == {"input"} and graph.graph["aliases"] == {}


def test_optimise_refuses_unknown_passes_and_broken_models():
    graph = cnnlang.load("network n { input 8\n fc(2) }").graph
    with pytest.raises(ValueError, match="unknown pass 'fold'; the passes are: inference, dead-code"):
        optimise(graph, ["fold"])
    broken = cnnlang.load("network n { input 3x2x2\n conv(4, 3x3) }", keep_going=True).graph
    with pytest.raises(ValueError, match="has errors"):
        optimise(broken)


def test_verify_catches_broken_optimisation_attributes():
    graph = optimised("network n { input 3x8x8\n conv(4, 1x1) -> relu\n concat { branch { conv(2, 1x1) } branch { conv(2, 1x1) } } }")
    graph.nodes["conv2"]["write_into"] = ("concat1", 1)
    with pytest.raises(AssertionError, match="slice starts at 0"):
        ir.verify(graph)
    graph.nodes["conv2"]["write_into"] = ("concat1", 0)
    graph.graph["memory"]["slots"] = [1 for _ in graph.graph["memory"]["slots"]]
    with pytest.raises(AssertionError, match="too small"):
        ir.verify(graph)


def test_a_residual_add_fuses_only_into_a_pointwise_conv_it_alone_reads():
    graph = optimised("""network n {
    input 4x6x6
    s: conv(4, 3x3, pad = 1)
    a: conv(4, 3x3, pad = 1)
    from a, s -> add
    b: conv(4, 1x1)
    c: conv(4, 1x1)
    from c, s -> add
    d: conv(4, 1x1)
    from d, d -> e: add
    from e, d -> f: add
    output f, b
}""", "fuse-residual")
    assert messages(graph, "fuse-residual") == [
        "add at line 5 not fused: a is not pointwise (1x1, stride 1, no padding); s is not pointwise (1x1, stride 1, no padding)",
        "add at line 10 not fused: it does not sum two different tensors",
        "add at line 11 not fused: its input e is not a conv (add); the conv d output has 2 consumers",
    ]
    assert messages(graph, "fuse-residual", "changed") == ["add at line 8 fused into c (conv at line 7)"]
    assert graph.nodes["c"]["inputs"] == ["b", "s"] and graph.nodes["c"]["residual"]


def test_a_residual_conv_writes_over_its_shortcut_only_where_nothing_reads_it_after():
    graph = optimised("""network n {
    input 4x6x6
    s: conv(4, 3x3, pad = 1)
    from input -> a: conv(4, 1x1)
    from a, s -> r: add
    from s -> t: relu
    from input -> b: conv(4, 1x1)
    from b, input -> u: add
    from input -> c: conv(4, 1x1)
    from c, u -> v: add
    from t -> d: conv(4, 1x1)
    from d, v -> w: add
    e: conv(4, 1x1)
    from e, w -> x: add
    output r, t, u, x
}""", "fuse-residual", "plan-memory")
    assert [m for m in messages(graph, "plan-memory") if m.startswith("conv")] == [
        "conv at line 4 not in place: its shortcut's buffer is read after it (by t)",
        "conv at line 7 not in place: its shortcut is the network input, which belongs to the caller",
        "conv at line 9 not in place: its shortcut's buffer holds the network output b",
        "conv at line 13 not in place: its input shares its shortcut's buffer",
    ]
    assert messages(graph, "plan-memory", "changed")[0] == "conv at line 11 overwrites its shortcut c"
    assert graph.nodes["d"]["in_place"] and ir.overwritten_input(graph, "d") == "c"
    assert "d" not in graph.graph["memory"]["assign"]  # it owns no buffer: c's is its
    ir.verify(graph)
    graph.nodes["a"]["in_place"] = True  # t reads s after a
    with pytest.raises(AssertionError, match="a: in_place, but the input it overwrites is read elsewhere"):
        ir.verify(graph)


def test_a_depthwise_conv_streams_only_into_a_pointwise_conv_it_alone_feeds():
    graph = optimised("""network n {
    input 16x6x6
    a: conv(16, 3x3, pad = 1, groups = 16) -> relu
    conv(8, 1x1) -> relu
    b: conv(8, 3x3, pad = 1, groups = 8)
    conv(16, 1x1)
    c: conv(16, 3x3, pad = 1, groups = 16) -> tanh
    conv(16, 1x1)
    d: conv(16, 3x3, pad = 1, groups = 16)
    conv(16, 3x3, pad = 1)
    e: conv(16, 3x3, pad = 1, groups = 16)
    conv(16, 1x1) -> sigmoid
    f: conv(16, 3x3, pad = 1, groups = 16)
    conv(16, 1x1, groups = 2)
    g: conv(16, 3x3, pad = 1, groups = 16)
    from g -> h: conv(16, 1x1)
    from g -> i: conv(16, 1x1)
    from h, i -> k: add
    j: conv(16, 3x3, pad = 1, groups = 16)
    output j, k
}""", "fuse-activation", "fuse-depthwise")
    assert messages(graph, "fuse-depthwise") == [
        "conv at line 5 stores its output: 8 channels, not a multiple of 16",
        "conv at line 7 stores its output: it applies tanh (only relu is fused)",
        "conv at line 9 stores its output: its reader conv4 is not pointwise (1x1, stride 1, no padding)",
        "conv at line 11 stores its output: its reader conv5 applies sigmoid (only relu is fused)",
        "conv at line 13 stores its output: its reader conv6 has 2 groups",
        "conv at line 15 stores its output: its output has 2 consumers",
        "conv at line 19 stores its output: its output is also a network output",
    ]
    assert messages(graph, "fuse-depthwise", "changed") == ["conv at line 3 runs inside conv1 (conv at line 4)"]
    assert graph.nodes["a"]["streamed_into"] == "conv1"


def test_plan_memory_keeps_a_streamed_convs_input_until_its_reader():
    """The 1x1 conv reads the depthwise conv's input: its output cannot take that input's slot,
    and the depthwise conv has none."""
    graph = optimised("""network n {
    input 16x6x6
    conv(16, 1x1)
    d: conv(16, 3x3, pad = 1, groups = 16)
    p: conv(16, 1x1)
}""", "fuse-depthwise", "plan-memory")
    assign = graph.graph["memory"]["assign"]
    assert graph.nodes["d"]["streamed_into"] == "p" and "d" not in assign
    assert assign["p"] != assign["conv1"]
    ir.verify(graph)
    graph.nodes["d"]["streamed_into"] = "conv1"
    with pytest.raises(AssertionError, match="d: streamed_into 'conv1', which must be its only reader"):
        ir.verify(graph)
    graph.nodes["d"]["streamed_into"] = "p"
    graph.nodes["p"]["activation"] = "tanh"
    with pytest.raises(AssertionError, match="d: streamed_into 'p', but its reader p applies tanh"):
        ir.verify(graph)


def test_a_residual_conv_does_not_write_over_a_shortcut_a_streamed_conv_reads_later():
    """d reads t, but at p's step (it runs inside p), after a: a must not overwrite t."""
    graph = optimised("""network n {
    input 16x6x6
    t: conv(16, 1x1)
    d: conv(16, 3x3, pad = 1, groups = 16)
    from t -> b: conv(16, 3x3, pad = 1)
    a: conv(16, 1x1)
    from a, t -> r: add
    from d -> p: conv(16, 1x1)
    output p, r
}""", "fuse-residual", "fuse-depthwise", "plan-memory")
    assert graph.nodes["d"]["streamed_into"] == "p" and graph.nodes["a"]["residual"]
    assert "conv at line 6 not in place: its shortcut's buffer is read after it (by d)" in messages(graph, "plan-memory")
    assert not graph.nodes["a"].get("in_place")
    ir.verify(graph)
    graph.nodes["a"]["in_place"] = True
    with pytest.raises(AssertionError, match="a: in_place, but the input it overwrites is read elsewhere"):
        ir.verify(graph)
