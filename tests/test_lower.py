"""Lowering: naming, scopes, block parameters, arithmetic, repetition, imports, outputs, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnlang
from cnnlang import ir


def nodes(source: str, **kwargs) -> dict:
    graph = cnnlang.load(source, **kwargs).graph
    return {n: graph.nodes[n] for n in ir.ordered(graph)}


def error_of(source, **kwargs) -> cnnlang.CnnError:
    with pytest.raises(cnnlang.CnnError) as caught:
        cnnlang.load(source, **kwargs)
    return caught.value


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


BASIC = """
from "resnet_blocks.cnn" import basic    # the zoo's ResNet basic block
"""


# ---- naming ------------------------------------------------------------------------------


def test_automatic_names_count_per_op():
    names = list(nodes("network n { input 3x8x8 ; conv(4, 3x3) -> relu ; conv(4, 3x3) -> relu ; fc(2) }"))
    assert names == ["input", "conv1", "relu1", "conv2", "relu2", "fc1"]


def test_aliases_are_named_by_their_op():
    graph = nodes("network n { input 3x8x8 ; conv2d(4, 3x3) ; bn ; linear(2) }")
    assert list(graph) == ["input", "conv1", "batchnorm1", "fc1"]
    assert [d["op"] for d in graph.values()] == ["input", "conv", "batchnorm", "fc"]


def test_labels_name_nodes_and_automatic_names_avoid_them():
    graph = nodes("""network n {
    input 3x8x8
    conv(4, 1x1)
    conv(4, 1x1)
    conv1: conv(4, 1x1)
    stem: relu
}""")
    # 'conv1' is a label written later, so the automatic names skip it.
    assert list(graph) == ["input", "conv2", "conv3", "conv1", "stem"]
    assert graph["conv1"]["inputs"] == ["conv3"]


def test_label_used_twice_is_an_error():
    error = error_of("network n {\n input 3x8x8\n a: relu\n a: relu\n}")
    assert "the name 'a' is used twice" in error.message
    assert error.span.line == 4


def test_block_instances_make_paths():
    graph = nodes(BASIC + "network n { input 16x8x8 ; basic(16) ; basic(16) }")
    assert "basic1/conv1" in graph and "basic1/conv2" in graph and "basic1/add1" in graph
    assert "basic2/relu2" in graph
    assert graph["basic1/conv1"]["path"] == ("basic1",)
    assert graph["basic2/conv1"]["inputs"] == ["basic1/relu2"]
    # the call stack holds the call's span (line 3: the network line of the source)
    assert [span.line for span in graph["basic1/conv1"]["call_stack"]] == [3]


def test_labelled_block_instance():
    graph = nodes(BASIC + "network n { input 16x8x8 ; first: basic(16) ; from first -> relu }")
    assert "first/conv1" in graph
    assert graph["relu1"]["inputs"] == ["first/relu2"]


def test_labelled_repetition_is_a_group_scope():
    model = cnnlang.load(BASIC + "network n {\n input 16x8x8\n stage: basic(16) * 2\n from stage -> fc(2)\n}")
    graph = model.graph
    assert "stage/basic1/conv1" in graph and "stage/basic2/conv1" in graph
    scopes = graph.graph["scopes"]
    assert scopes[("stage",)].block is None
    assert scopes[("stage",)].signature == "basic * 2"
    assert scopes[("stage", "basic1")].block == "basic"
    assert scopes[("stage", "basic2")].signature == "basic(16)"
    assert graph.nodes["fc1"]["inputs"] == ["stage/basic2/relu2"]


def test_unlabelled_repetition_stays_in_the_scope():
    graph = nodes("network n { input 3x8x8 ; conv(3, 1x1) * 3 ; repeat 2 { relu -> tanh } }")
    assert list(graph) == ["input", "conv1", "conv2", "conv3", "relu1", "tanh1", "relu2", "tanh2"]


def test_labelled_repeat_block():
    graph = nodes("network n { input 3x8x8 ; body: repeat 2 { conv(3, 1x1) -> relu } ; from body -> fc(2) }")
    assert [n for n in graph if n.startswith("body/")] == ["body/conv1", "body/relu1", "body/conv2", "body/relu2"]
    assert graph["fc1"]["inputs"] == ["body/relu2"]


def test_labelled_repeat_keeps_automatic_names_off_its_labels():
    # As in the network's own scope: a label written later in the group is not taken by an
    # automatic name given earlier.
    graph = nodes("network n { input 3x8x8 ; g: repeat 1 { conv(8, 3x3, pad = 1) ; conv1: conv(8, 3x3, pad = 1) } ; from g -> relu }")
    assert [n for n in graph if n.startswith("g/")] == ["g/conv2", "g/conv1"]
    assert graph["relu1"]["inputs"] == ["g/conv1"]
    error = error_of("network n { input 3x8x8 ; g: repeat 1 { from later -> relu ; later: relu } }")
    assert "'later' is used before the line that defines it" in error.message


def test_group_labels_are_local_to_the_group():
    error = error_of("network n { input 3x8x8 ; g: repeat 1 { inner: relu } ; from inner -> tanh }")
    assert "no tensor named 'inner'" in error.message
    graph = nodes("network n { input 3x8x8 ; outer: relu ; g: repeat 2 { from outer -> tanh } }")
    assert graph["g/tanh2"]["inputs"] == ["outer"]


def test_block_signature_shows_non_default_arguments():
    scopes = cnnlang.load(BASIC + "network n { input 16x8x8 ; basic(32, stride = 2) ; basic(32) }").graph.graph["scopes"]
    assert scopes[("basic1",)].signature == "basic(32, stride=2)"
    assert scopes[("basic2",)].signature == "basic(32)"
    assert scopes[("basic1",)].arguments == {"c": 32, "stride": 2}


# ---- block parameters and arithmetic -----------------------------------------------------


def test_parameter_default_refers_to_an_earlier_parameter():
    source = "block b(c, d = c * 2) { conv(d, 1x1) }\nnetwork n { input 3x4x4 ; b(8) ; b(8, d = 5) ; b(c = 3) }"
    graph = nodes(source)
    assert graph["b1/conv1"]["shape"] == (16, 4, 4)
    assert graph["b2/conv1"]["shape"] == (5, 4, 4)
    assert graph["b3/conv1"]["shape"] == (6, 4, 4)


def test_parameter_default_cannot_refer_to_a_later_parameter():
    error = error_of("block b(d = c * 2, c = 1) { conv(d, 1x1) }\nnetwork n { input 3x4x4 ; b() }")
    assert "unknown name 'c'" in error.message


@pytest.mark.parametrize(
    "expression, filters",
    [("c * 4", 32), ("c // 2", 4), ("c / 2", 4), ("c / 4 * 3", 6), ("c + 1 - 2", 7), ("(c + 1) // 2", 4),
     ("c % 3 + 1", 3), ("-c + 10", 2), ("2 * (c - 6)", 4)],
)
def test_arithmetic_on_block_parameters(expression, filters):
    graph = nodes(f"block b(c) {{ conv({expression}, 1x1) }}\nnetwork n {{ input 3x4x4 ; b(8) }}")
    layer = graph["b1/conv1"]["layer"]
    assert layer.filters == filters
    assert type(layer.filters) is int


def test_inexact_division_is_not_a_whole_number():
    error = error_of("block b(c) {\n conv(c / 2, 1x1)\n}\nnetwork n { input 3x4x4 ; b(5) }")
    assert "expected a whole number, got 2.5" in error.message
    assert error.span.line == 2 and error.span.column == 7
    assert any("in block 'b' used here" in note.message for note in error.notes)


def test_sizes_from_parameters():
    graph = nodes("block b(k, s) { conv(4, (k, k), stride = s) }\nnetwork n { input 3x9x9 ; b(3, 2) }")
    assert graph["b1/conv1"]["shape"] == (4, 4, 4)


def test_repeat_count_from_a_parameter_and_zero():
    graph = nodes("block b(n) { repeat n { relu } }\nnetwork n { input 3x4x4 ; b(3) ; b(0) ; conv(3, 1x1) * 0 }")
    assert [n for n in graph] == ["input", "b1/relu1", "b1/relu2", "b1/relu3"]


def test_repeat_zero_is_identity():
    graph = nodes("network n { input 3x4x4 ; a: relu ; repeat 0 { conv(8, 1x1) } ; tanh }")
    assert list(graph) == ["input", "a", "tanh1"]
    assert graph["tanh1"]["inputs"] == ["a"]
    graph = nodes("network n { input 3x4x4 ; a: relu ; g: repeat 0 { conv(8, 1x1) } ; from g -> tanh }")
    assert graph["tanh1"]["inputs"] == ["a"]


def test_negative_repeat_count():
    error = error_of("network n { input 3x4x4 ; repeat -1 { relu } }")
    assert "repeat count" in error.message and ">= 0" in error.message


def test_bad_block_argument_value_points_inside_the_block():
    error = error_of(BASIC + "network n {\n input 16x8x8\n basic(16, stride = 0)\n}")
    assert "argument 'stride' of conv" in error.message
    assert error.notes[-1].span.line == 5


# ---- block call errors -------------------------------------------------------------------


def test_block_given_too_many_arguments():
    error = error_of("block b(c) { relu }\nnetwork n { input 3x4x4 ; b(1, 2) }")
    assert "block 'b' takes 1 argument(s), got 2" in error.message
    assert (error.span.line, error.span.column) == (2, 32)  # the extra argument
    assert error.notes[0].message == "'b' is defined here"


def test_block_missing_parameter_and_unknown_keyword():
    error = error_of("block b(c) { relu }\nnetwork n { input 3x4x4 ; b() }")
    assert "needs the parameter 'c'" in error.message
    error = error_of("block b(channels) { relu }\nnetwork n { input 3x4x4 ; b(channel = 2) }")
    assert "no parameter 'channel'; did you mean 'channels'?" in error.message
    error = error_of("block b(c) { relu }\nnetwork n { input 3x4x4 ; b(1, c = 2) }")
    assert "given twice" in error.message


def test_positional_argument_after_a_keyword():
    error = error_of("block b(c, s = 1) { conv(c, 3x3, stride = s) }\nnetwork n { input 3x8x8 ; b(s = 2, 8) }")
    assert "a positional argument cannot follow a keyword argument" in error.message
    assert (error.span.line, error.span.column) == (2, 36)
    error = error_of("network n { input 3x8x8 ; conv(stride = 2, 8, 3) }")
    assert "a positional argument cannot follow a keyword argument" in error.message


def test_same_tensor_twice_into_add():
    model = cnnlang.load("network n { input 3x8x8 ; a: relu ; from a, a -> add }")
    graph = model.graph
    assert graph.nodes["add1"]["inputs"] == ["a", "a"]
    assert graph.edges["a", "add1"]["index"] == [0, 1]
    ir.verify(graph)
    assert model.output_shape == (3, 8, 8)


def test_recursive_block():
    error = error_of("block b(c) { b(c) }\nnetwork n { input 3x4x4 ; b(1) }")
    assert "block 'b' uses itself" in error.message


def test_mutually_recursive_blocks():
    error = error_of("block a() { b() }\nblock b() { a() }\nnetwork n { input 3x4x4 ; a() }")
    assert "uses itself" in error.message and "a -> b" in error.message


def test_input_inside_a_block():
    error = error_of("block b() {\n input 3x4x4\n}\nnetwork n { input 3x4x4 ; b() }")
    assert "'input' belongs in a network" in error.message
    assert error.span.line == 2


def test_output_inside_a_block():
    error = error_of("block b() { x: relu ; output x }\nnetwork n { input 3x4x4 ; b() }")
    assert "'output' belongs in a network" in error.message


def test_unknown_layer_suggests_a_name():
    assert "did you mean 'conv'?" in error_of("network n { input 3x4x4 ; cnv(8, 3) }").message
    assert "did you mean 'basic'?" in error_of(BASIC + "network n { input 3x4x4 ; basik(8) }").message


def test_block_with_a_layer_name():
    assert "name of a built-in layer" in error_of("block relu() { tanh }\nnetwork n { input 3 ; tanh }").message


def test_blocks_cannot_see_the_callers_labels():
    error = error_of("block b() { from x -> relu }\nnetwork n { input 3x4x4 ; x: relu ; b() }")
    assert "no tensor named 'x'" in error.message


def test_block_input_is_named_input():
    graph = nodes("block b() { r: relu ; from input -> t: tanh ; from r, t -> add }\nnetwork n { input 3x4x4 ; conv(3, 1x1) ; b() }")
    assert graph["b1/t"]["inputs"] == ["conv1"]
    assert graph["b1/add1"]["inputs"] == ["b1/r", "b1/t"]


# ---- input, from, outputs ----------------------------------------------------------------


def test_from_several_tensors_into_add_and_concat():
    graph = nodes("""network n {
    input 3x4x4
    a: conv(4, 1x1)
    b: conv(4, 1x1)
    from a, b -> add
    from input, a, b -> concat
}""")
    assert graph["add1"]["inputs"] == ["a", "b"]
    assert graph["add1"]["shape"] == (4, 4, 4)
    assert graph["concat1"]["inputs"] == ["input", "a", "b"]
    assert graph["concat1"]["shape"] == (11, 4, 4)


def test_from_several_tensors_needs_a_joining_layer():
    assert "add or concat" in error_of("network n { input 3 ; a: relu ; b: tanh ; from a, b }").message
    assert "relu takes one input, got 2" in error_of("network n { input 3 ; a: relu ; b: tanh ; from a, b -> relu }").message
    error = error_of("network n { input 3 ; relu -> add }")
    assert "add takes at least 2 inputs, got 1" in error.message and "from a, b -> add" in error.message


def test_reference_errors():
    error = error_of("network n {\n input 3x4x4\n from later -> relu\n later: tanh\n}")
    assert "'later' is used before the line that defines it" in error.message
    error = error_of("network n { input 3x4x4 ; stem: relu ; from stam -> relu }")
    assert "no tensor named 'stam' here; did you mean 'stem'?" in error.message


def test_default_outputs_last_tensor_first_then_other_sinks():
    model = cnnlang.load("""network n {
    input 3x4x4
    a: conv(4, 1x1)
    side: fc(2)
    from a -> main: fc(3)
}""")
    assert model.graph.graph["outputs"] == ["main", "side"]
    assert model.output_shape == (3,)


def test_explicit_outputs():
    model = cnnlang.load("""network n {
    input 3x4x4
    a: conv(4, 1x1)
    b: fc(2)
    from a -> c: fc(3)
    output b, a
}""")
    assert model.graph.graph["outputs"] == ["b", "a"]
    assert model.output_shape == (2,)
    assert "declared" in error_of("network n { input 3 ; a: relu ; output a ; output a }").message


def test_input_errors():
    assert "declares no input" in error_of("network n { }").message
    assert "must be the first statement" in error_of("network n { input 3 ; input 3 }").message
    assert "this layer has no input" in error_of("network n { relu ; input 3 }").message
    assert "positive" in error_of("network n { input 3x0x4 }").message
    assert "input size" in error_of("network n { input 1x2x3x4 }").message


def test_only_blocks_is_not_a_network():
    assert "defines no network" in error_of("block b() { relu }").message


def test_residual_and_concat_structure():
    graph = nodes("""network n {
    input 4x8x8
    r: residual { conv(4, 3x3, pad = 1) } shortcut { conv(4, 1x1) }
    concat { branch { relu } branch { tanh } }
}""")
    assert graph["r"]["op"] == "add" and graph["r"]["inputs"] == ["conv1", "conv2"]
    assert graph["r"]["shortcut"] == "projection"
    assert graph["concat1"]["inputs"] == ["relu1", "tanh1"]
    assert graph["concat1"]["shape"] == (8, 8, 8)
    assert "unknown shortcut 'magic'" in error_of("network n { input 3 ; residual { relu } shortcut magic }").message


def test_ir_invariants_hold_for_the_zoo():
    for name in cnnlang.zoo_names():
        graph = cnnlang.load(name).graph
        ir.verify(graph)
        assert graph.graph["errors"] == [], name
        assert len(set(graph.nodes)) == graph.number_of_nodes()


# ---- imports -----------------------------------------------------------------------------


def test_import_all_blocks(tmp_path):
    write(tmp_path, "blocks.cnn", "block two(c) { conv(c, 1x1) -> relu }\nblock three(c) { two(c) -> tanh }\n")
    main = write(tmp_path, "main.cnn", 'import "blocks.cnn"\nnetwork n { input 3x4x4 ; three(5) ; two(2) }\n')
    model = cnnlang.load(main)
    assert model.output_shape == (2, 4, 4)
    assert "three1/two1/conv1" in model.graph
    assert model.source == str(main)


def test_import_named_blocks_only(tmp_path):
    write(tmp_path, "blocks.cnn", "block a(c) { conv(c, 1x1) }\nblock b(c) { relu }\n")
    main = write(tmp_path, "main.cnn", 'from "blocks.cnn" import a\nnetwork n { input 3x4x4 ; a(2) ; b(2) }\n')
    error = error_of(main)
    assert "unknown layer or block 'b'" in error.message


def test_imported_block_uses_its_own_imports(tmp_path):
    write(tmp_path, "base.cnn", "block unit(c) { conv(c, 1x1) }\n")
    write(tmp_path, "mid.cnn", 'from "base.cnn" import unit\nblock pair(c) { unit(c) * 2 }\n')
    main = write(tmp_path, "main.cnn", 'from "mid.cnn" import pair\nnetwork n { input 3x4x4 ; pair(6) }\n')
    assert cnnlang.load(main).output_shape == (6, 4, 4)


def test_import_from_a_subfolder(tmp_path):
    (tmp_path / "lib").mkdir()
    write(tmp_path / "lib", "blocks.cnn", "block a() { relu }\n")
    main = write(tmp_path, "main.cnn", 'import "lib/blocks.cnn"\nnetwork n { input 3 ; a() }\n')
    assert list(cnnlang.load(main).graph) == ["input", "a1/relu1"]


def test_import_from_the_zoo(tmp_path):
    main = write(tmp_path, "main.cnn", 'from "resnet_blocks.cnn" import basic\nnetwork n { input 8x8x8 ; basic(16, stride = 2) }\n')
    assert cnnlang.load(main).output_shape == (16, 4, 4)


def test_missing_import(tmp_path):
    main = write(tmp_path, "main.cnn", 'import "nowhere.cnn"\nnetwork n { input 3 ; relu }\n')
    error = error_of(main)
    assert "cannot import 'nowhere.cnn'" in error.message
    assert str(error).startswith(f"{main}:1:1: error:")


def test_missing_block_in_import(tmp_path):
    write(tmp_path, "blocks.cnn", "block stage(c) { relu }\n")
    main = write(tmp_path, "main.cnn", 'from "blocks.cnn" import stag\nnetwork n { input 3 ; relu }\n')
    error = error_of(main)
    assert "'blocks.cnn' defines no block 'stag'; did you mean 'stage'?" in error.message
    assert (error.span.line, error.span.column) == (1, 26)


def test_circular_import(tmp_path):
    write(tmp_path, "a.cnn", 'import "b.cnn"\nblock a() { relu }\n')
    write(tmp_path, "b.cnn", 'import "a.cnn"\nblock b() { relu }\n')
    main = write(tmp_path, "main.cnn", 'import "a.cnn"\nnetwork n { input 3 ; a() }\n')
    error = error_of(main)
    assert "circular import: a.cnn -> b.cnn -> a.cnn" in error.message


def test_self_import(tmp_path):
    main = write(tmp_path, "main.cnn", 'import "main.cnn"\nnetwork n { input 3 ; relu }\n')
    # main.cnn is not on the loading stack (it is the root), so it is read once more as an import,
    # and that import of itself is the cycle.
    assert "circular import" in error_of(main).message


def test_block_defined_and_imported(tmp_path):
    write(tmp_path, "blocks.cnn", "block a() { relu }\n")
    main = write(tmp_path, "main.cnn", 'import "blocks.cnn"\nblock a() { tanh }\nnetwork n { input 3 ; a() }\n')
    assert "defined here and also imported" in error_of(main).message


def test_syntax_error_in_an_imported_file_is_located_there(tmp_path):
    blocks = write(tmp_path, "blocks.cnn", "block a() {\n relu ->\n")
    main = write(tmp_path, "main.cnn", 'import "blocks.cnn"\nnetwork n { input 3 ; a() }\n')
    error = error_of(main)
    assert error.span.file == str(blocks.resolve())


def test_importing_a_model_takes_only_its_blocks(tmp_path):
    write(tmp_path, "model.cnn", "block a() { relu }\nnetwork other { input 3 ; a() }\n")
    main = write(tmp_path, "main.cnn", 'import "model.cnn"\nnetwork n { input 5 ; a() }\n')
    model = cnnlang.load(main)
    assert model.name == "n" and model.input_shape == (5,)


def test_error_inside_an_imported_block_points_into_its_file(tmp_path):
    blocks = write(tmp_path, "blocks.cnn", "block unit(c) {\n    conv(c, 1x1)\n}\n")
    main = write(tmp_path, "main.cnn", 'import "blocks.cnn"\nnetwork n {\n    input 3x4x4\n    unit(2.5)\n}\n')
    error = error_of(main)
    assert error.span.file == str(blocks.resolve())
    assert (error.span.line, error.span.column) == (2, 10)
    assert "expected a whole number, got 2.5" in error.message
    (note,) = error.notes
    assert note.span.file == str(main) and note.span.line == 4
    assert str(error).splitlines()[0].startswith(f"{blocks.resolve()}:2:10: error:")
