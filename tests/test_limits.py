"""Limits on hostile models, checked before the work: nesting depth (parser and lowering), the
number of layers a model expands to (with the arithmetic), and the work of expanding blocks."""

from __future__ import annotations

import time

import pytest

import cnnlang
from cnnlang.lower import MAX_EXPANSION_DEPTH, MAX_LAYERS
from cnnlang.parser import MAX_NESTING
from cnnlang.report import human


def error_of(source: str) -> cnnlang.CnnError:
    with pytest.raises(cnnlang.CnnError) as caught:
        cnnlang.load(source)
    return caught.value


def network(line: str) -> str:
    return f"network n {{\n input 3x8x8\n {line}\n}}\n"


@pytest.mark.parametrize("expression", [
    "-" * 500 + "4",  # the audit's 500 nested unary minus
    "+".join(["1"] * 600),  # a long sum nests left to right
    "4, " + "(1, " * 200 + "1" + ")" * 200,  # tuples in tuples
])
def test_deep_expressions_are_a_located_error(expression):
    error = error_of(network(f"conv({expression}, 3x3)"))
    assert "nested too deeply" in error.message and str(MAX_NESTING) in error.message
    assert error.span is not None and error.span.line == 3


def test_deeply_nested_shortcuts_are_a_located_error():
    depth = 120
    body = "relu\n"
    for _ in range(depth):
        body = f"residual {{\n relu\n}} shortcut {{\n{body}}}\n"
    error = error_of(network(body))
    assert "nested too deeply" in error.message and error.span is not None


def test_nesting_inside_the_limit_still_works():
    model = cnnlang.load(network("conv(" + "(" * 30 + "4" + ")" * 30 + ", 3x3)"))
    assert model.output_shape == (4, 6, 6)


def test_a_chain_of_blocks_deeper_than_the_limit_is_refused():
    count = MAX_EXPANSION_DEPTH + 5
    blocks = "".join(f"block b{i}() {{\n b{i + 1}()\n}}\n" for i in range(count)) + f"block b{count}() {{\n relu\n}}\n"
    error = error_of(blocks + network("b0()"))
    assert f"more than {MAX_EXPANSION_DEPTH} levels deep" in error.message
    assert any("in block" in note.message for note in error.notes)


def test_nested_repeats_fail_at_once_with_the_arithmetic():
    source = network("repeat 1000 {\n repeat 1000 {\n relu\n }\n }")
    started = time.perf_counter()
    error = error_of(source)
    assert time.perf_counter() - started < 0.5
    assert "repeat 1,000 (line 3) × repeat 1,000 (line 4) = 1,000,000 copies" in error.message
    assert f"at most {MAX_LAYERS:,}" in error.message
    assert error.span.line == 5


def test_a_repeated_block_call_counts_its_repeat():
    source = "block b() {\n conv(3, 1x1) -> relu\n}\n" + network("repeat 100 {\n b() * 1000\n }")
    error = error_of(source)
    assert "repeat 100 (line 6) × b() * 1,000 (line 7) = 100,000 copies" in error.message


def test_blocks_that_expand_exponentially_are_stopped():
    blocks = "block b0() {\n relu\n}\n" + "".join(
        f"block b{i + 1}() {{\n" + "\n".join([f" b{i}()"] * 10) + "\n}\n" for i in range(7))
    started = time.perf_counter()
    error = error_of(blocks + network("b7()"))
    assert time.perf_counter() - started < 5
    assert f"at most {MAX_LAYERS:,}" in error.message


def test_expansion_without_layers_is_bounded_too():
    source = "block e() {\n}\n" + network("repeat 10000 {\n repeat 10000 {\n e()\n }\n }")
    started = time.perf_counter()
    error = error_of(source)
    assert time.perf_counter() - started < 5
    assert "repeat 10,000 (line 5) × repeat 10,000 (line 6)" in error.message


def test_a_model_at_the_layer_limit_is_fine():
    model = cnnlang.load(network(f"repeat {MAX_LAYERS - 1} {{\n relu\n }}"))
    assert len(model.graph) == MAX_LAYERS


def test_human_prints_counts_beyond_float_range():
    assert human(10 ** 400) == "about 10^400"
    assert human(3 * 10 ** 20, "B") == "about 10^20 B"
    assert human(1500) == "1.50 k"


def test_render_and_summary_of_a_huge_count(tmp_path, capsys):
    from cnnlang.cli import main

    path = tmp_path / "huge.cnn"
    path.write_text(network("fc(" + "9" * 99 + ")"), encoding="utf-8")
    assert main(["render", str(path), "-o", str(tmp_path / "huge.dot")]) == 0
    assert main(["summary", str(path)]) == 0
    assert "about 10^" in capsys.readouterr().out
