"""The grammar and the parse tree → syntax objects."""

from __future__ import annotations

import pytest

from cnnlang import syntax as s
from cnnlang.errors import CnnError
from cnnlang.parser import parse


def items(text: str) -> list:
    module = parse("network n {\n" + text + "\n}")
    return [item for stmt in module.network.body if isinstance(stmt, s.Chain) for item in stmt.items]


def test_layout_rules():
    source = """
    input 3x32x32   # a comment
    conv(16,
         3x3, pad = 1) ->
        relu
        -> maxpool(2)
    relu; relu
    """
    module = parse("network n {" + source + "}")
    chains = [stmt for stmt in module.network.body if isinstance(stmt, s.Chain)]
    assert [[i.name for i in c.items] for c in chains] == [["conv", "relu", "maxpool"], ["relu"], ["relu"]]


def test_literals():
    (call,) = items("conv(64, 3x5, stride = (2, 1), pad = same, bias = false, eps = 1e-3, p = .5)")
    values = {a.keyword: a.value for a in call.args if a.keyword is not None}
    positional = [a.value.value for a in call.args if a.keyword is None]
    assert positional == [64, (3, 5)]
    assert isinstance(values["stride"], s.TupleExpr)
    assert isinstance(values["pad"], s.NameRef) and values["pad"].name == "same"
    assert values["bias"].value is False
    assert values["eps"].value == pytest.approx(1e-3)
    assert values["p"].value == pytest.approx(0.5)


def test_arithmetic_precedence():
    (call,) = items("conv(c + 2 * 3 - 1, 3)")
    expr = call.args[0].value
    # (c + (2 * 3)) - 1
    assert expr.op == "-" and expr.left.op == "+" and expr.left.right.op == "*"


def test_structure():
    (concat, residual, repeat, call) = items(
        "concat { branch { conv(8, 1) } branch { } }\n"
        "r: residual { relu } shortcut auto\n"
        "repeat 2 { relu }\n"
        "basic(64) * 3"
    )
    assert isinstance(concat, s.Concat) and len(concat.branches) == 2 and concat.branches[1] == []
    assert isinstance(residual, s.Residual) and residual.shortcut == "auto" and residual.label == "r"
    assert isinstance(repeat, s.Repeat) and repeat.count.value == 2
    assert call.name == "basic" and call.repeat.value == 3


def test_sources_and_outputs():
    module = parse("network n {\n input 3x8x8\n a: relu\n from a, input -> add\n output a\n}")
    chain = module.network.body[2]
    assert [name for name, _ in chain.sources] == ["a", "input"]
    assert [name for name, _ in module.network.body[3].names] == ["a"]


def test_blocks_and_imports():
    module = parse('import "x.cnn"\nfrom "y.cnn" import a, b\nblock f(c, k = 3) { conv(c, k) }\n')
    assert module.imports[0].names is None and module.imports[0].path == "x.cnn"
    assert [n for n, _ in module.imports[1].names] == ["a", "b"]
    assert [p.name for p in module.blocks["f"].params] == ["c", "k"]
    assert module.network is None


def test_spans_point_at_source():
    (conv,) = items("  conv(8, 3x3)")
    assert (conv.span.line, conv.span.column, conv.span.end_column) == (2, 3, 15)  # end is exclusive


@pytest.mark.parametrize(
    "source, message",
    [
        ("network n { input 3x8x8\n conv(8 3) }", "expected ')' or ',', found '3'"),
        ("network n { input 3x8x8 }\nnetwork m { input 3x8x8 }", "a file holds at most one network"),
        ("block b(c) { relu }\nblock b(c) { relu }", "block 'b' is defined twice"),
        ('import "unterminated\n', "unterminated string"),
    ],
)
def test_syntax_errors(source, message):
    with pytest.raises(CnnError) as info:
        parse(source)
    assert message in str(info.value)


def test_the_multiplication_sign_works_as_x_in_sizes_and_repeats():
    import cnnlang

    written = cnnlang.load("block b(c) { conv(c, 3×3, pad = 1) -> relu }\nnetwork n { input 3×16×16\n b(8) × 2 }")
    plain = cnnlang.load("block b(c) { conv(c, 3x3, pad = 1) -> relu }\nnetwork n { input 3x16x16\n b(8) * 2 }")
    assert written.dump() == plain.dump()
