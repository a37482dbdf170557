"""infer_shapes on small graphs: residual projections, mismatches, several errors, keep_going."""

from __future__ import annotations

import pytest

import cnnlang
from cnnlang import ir
from cnnlang.loader import load_program_text
from cnnlang.lower import lower
from cnnlang.passes import infer_shapes

BASIC = """
from "resnet_blocks.cnn" import basic    # the zoo's ResNet basic block
"""


def compile_error(source: str) -> cnnlang.CnnError:
    with pytest.raises(cnnlang.CnnError) as caught:
        cnnlang.load(source)
    return caught.value


def test_shapes_of_a_chain_by_hand():
    model = cnnlang.load("""
network n {
    input 3x32x32
    conv(16, 5x5)                       # 28
    maxpool(2x2, stride = 2)            # 14
    conv(32, 3x3, stride = 2, pad = 1)  # floor((14 + 2 - 3)/2) + 1 = 7
    flatten                             # 32*7*7 = 1568
    fc(10)
}
""")
    shapes = {n: d["shape"] for n, d in model.graph.nodes(data=True)}
    assert shapes == {
        "input": (3, 32, 32),
        "conv1": (16, 28, 28),
        "maxpool1": (16, 14, 14),
        "conv2": (32, 7, 7),
        "flatten1": (1568,),
        "fc1": (10,),
    }
    assert model.output_shape == (10,)
    assert model.errors == []


def test_input_shape_override():
    model = cnnlang.load("network n { input 3x32x32 ; conv(8, 3x3) }", input_shape=(3, 64, 48))
    assert model.input_shape == (3, 64, 48)
    assert model.output_shape == (8, 62, 46)


def test_residual_auto_identity_when_shapes_agree():
    model = cnnlang.load(BASIC + "network n { input 64x56x56 ; basic(64) }")
    graph = model.graph
    adds = [n for n in graph if graph.nodes[n]["op"] == "add"]
    assert len(adds) == 1
    assert graph.nodes[adds[0]]["shortcut"] == "identity"
    assert graph.nodes[adds[0]]["inputs"][1] == "input"
    assert not any("shortcut" in n for n in graph)
    assert model.output_shape == (64, 56, 56)


def test_residual_auto_projection_with_stride_2():
    model = cnnlang.load(BASIC + "network n { input 64x56x56 ; basic(128, stride = 2) }")
    graph = model.graph
    (add,) = [n for n in graph if graph.nodes[n]["op"] == "add"]
    assert graph.nodes[add]["shortcut"] == "projection"
    assert graph.nodes[add]["shape"] == (128, 28, 28)
    bn = graph.nodes[add]["inputs"][1]
    assert graph.nodes[bn]["op"] == "batchnorm"
    (conv,) = graph.nodes[bn]["inputs"]
    data = graph.nodes[conv]
    assert data["op"] == "conv"
    assert data["inputs"] == ["input"]
    assert data["shape"] == (128, 28, 28)
    assert data["layer"].param_shapes([(64, 56, 56)]) == {"weight": (128, 64, 1, 1)}
    assert data["params"] == 1 * 1 * 64 * 128 == 8192
    assert data["macs"] == 128 * 28 * 28 * 64
    assert graph.nodes[bn]["params"] == 256
    assert graph.nodes[bn]["buffers"] == 256
    # Whole block by hand: conv 3x3 64→128, conv 3x3 128→128, 3 batchnorms of 128, projection.
    assert model.totals["params"] == 9 * 64 * 128 + 9 * 128 * 128 + 3 * 256 + 8192


def test_residual_auto_projection_of_odd_sizes_uses_ceil_stride():
    # 7 → 4 (3x3, stride 2, pad 1) needs a 1x1 stride-2 projection: ceil(7/2) = 4.
    model = cnnlang.load(BASIC + "network n { input 8x7x7 ; basic(8, stride = 2) }")
    (conv,) = [n for n in model.graph if n.endswith("shortcut_conv1")]
    assert model.graph.nodes[conv]["layer"].window([(8, 7, 7)]) == ((1, 1), (2, 2))
    assert model.output_shape == (8, 4, 4)


def test_residual_auto_projection_with_a_stride_per_axis():
    model = cnnlang.load("network n { input 4x9x8 ; residual { conv(4, 3x3, stride = (3, 2), pad = 1) } shortcut auto }")
    (conv,) = [n for n in model.graph if "shortcut_conv" in n]
    # 9 → floor(8/3)+1 = 3 = ceil(9/3); 8 → floor(7/2)+1 = 4 = ceil(8/2)
    assert model.graph.nodes[conv]["layer"].window([(4, 9, 8)]) == ((1, 1), (3, 2))
    assert model.graph.nodes[conv]["shape"] == (4, 3, 4)
    assert model.output_shape == (4, 3, 4)


def test_residual_auto_projection_channels_only():
    model = cnnlang.load("network n { input 16x8x8 ; residual { conv(32, 3x3, pad = 1) } shortcut auto }")
    (conv,) = [n for n in model.graph if "shortcut_conv" in n]
    assert model.graph.nodes[conv]["layer"].window([(16, 8, 8)]) == ((1, 1), (1, 1))
    assert model.graph.nodes[conv]["params"] == 16 * 32


def test_residual_auto_cannot_project_a_growing_size():
    error = compile_error("network n { input 4x8x8 ; residual { conv(4, 1x1, pad = 2) } shortcut auto }")
    assert "shortcut auto cannot project 4x8x8 to 4x12x12" in error.message


def test_residual_auto_after_a_long_chain():
    # Lowering computes the shapes before the residual; a long chain must not overflow the stack.
    model = cnnlang.load("network n { input 4x8x8 ; relu * 2500 ; residual { conv(8, 3x3, stride = 2) } shortcut auto }")
    assert model.output_shape == (8, 3, 3)


def test_residual_auto_on_a_huge_input_is_quick():
    error = compile_error("network n { input 1x100000000000000x1 ; residual { conv(1, 2x1) } shortcut auto }")
    assert "no stride of a 1x1 convolution maps 100000000000000 to 99999999999999" in error.message


@pytest.mark.parametrize("shortcut", ["shortcut identity", ""])
def test_identity_residual_mismatch_names_both_shapes(shortcut):
    error = compile_error(f"network n {{ input 16x8x8 ; residual {{ conv(32, 3x3, pad = 1) }} {shortcut} ; fc(10) }}")
    text = str(error)
    assert text.startswith("<string>:1:")
    assert "32x8x8" in error.message and "16x8x8" in error.message
    assert "shortcut auto" in error.message  # the hint
    assert error.others == []  # fc after it is skipped, not a second error


def test_add_mismatch_names_both_inputs():
    error = compile_error("""network n {
    input 8x8x8
    a: conv(8, 3x3, pad = 1)
    b: conv(8, 3x3)
    from a, b -> add
}""")
    assert "'a' is 8x8x8" in error.message and "'b' is 8x6x6" in error.message
    assert error.span.line == 5
    notes = [note.span.line for note in error.notes]
    assert notes == [3, 4]


def test_errors_in_two_branches_are_both_reported():
    error = compile_error("""network n {
    input 3x4x4
    concat {
        branch { conv(8, 9x9) -> relu }
        branch { maxpool(5x5) }
        branch { conv(2, 1x1) }
    }
    relu
}""")
    assert error.span.line == 4
    assert "conv" in error.message and "(4 - 9 + 2*0)/1 + 1 = -4" in error.message
    assert len(error.others) == 1
    other = error.others[0]
    assert other.span.line == 5
    assert "maxpool" in other.message
    assert str(other).startswith("<string>:5:18: error: maxpool")


def test_error_inside_a_block_has_a_note_at_the_call():
    error = compile_error(BASIC + "network n {\n input 64x2x2\n conv(64, 3x3)\n basic(64)\n}")
    # conv(64, 3x3) on 2x2 fails first (at the network's conv), and nothing downstream is reported.
    assert "conv1" in error.message and error.others == []
    error = compile_error("block b(c) {\n conv(c, 5x5)\n}\nnetwork n {\n input 3x4x4\n b(8)\n}")
    assert error.span.line == 2
    assert any(note.span.line == 6 and "in block 'b'" in note.message for note in error.notes)


def test_keep_going_marks_the_failing_node():
    source = """network n {
    input 3x8x8
    a: conv(8, 11x11)
    relu
    fc(10)
    from input -> b: conv(4, 3x3)
}"""
    with pytest.raises(cnnlang.CnnError):
        cnnlang.load(source)
    model = cnnlang.load(source, keep_going=True)
    nodes = model.graph.nodes
    assert isinstance(nodes["a"]["error"], cnnlang.CnnError)
    assert "shape" not in nodes["a"]
    for downstream in ("relu1", "fc1"):
        assert "shape" not in nodes[downstream]
        assert "error" not in nodes[downstream]
        assert "params" not in nodes[downstream]
    assert nodes["b"]["shape"] == (4, 6, 6)
    assert len(model.errors) == 1


def test_infer_shapes_can_run_on_a_lowered_graph_directly():
    graph = lower(load_program_text("network n { input 2x10 ; conv1d(4, 3) -> maxpool(2) }"))
    assert all("shape" not in graph.nodes[n] for n in ir.layer_nodes(graph))
    graph = infer_shapes(graph)
    assert [graph.nodes[n]["shape"] for n in ir.ordered(graph)] == [(2, 10), (4, 8), (4, 4)]
    assert graph.graph["errors"] == []
