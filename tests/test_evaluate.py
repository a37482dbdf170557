"""Argument expressions: literals, names, precedence, integer-exact division, errors."""

from __future__ import annotations

import pytest

from cnnlang import CnnError
from cnnlang import syntax as s
from cnnlang.evaluate import evaluate, unknown_name
from cnnlang.layers import Symbol
from cnnlang.parser import parse


def expr(text: str) -> s.Expr:
    module = parse(f"network n {{\n input 3\n relu({text})\n}}")
    chain = module.network.body[1]
    return chain.items[0].args[0].value


def value(text: str, **env):
    return evaluate(expr(text), env)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("7", 7),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("3x3", (3, 3)),
        ("3x224x224", (3, 224, 224)),
        ("true", True),
        ("false", False),
        ('"file.cnn"', "file.cnn"),
        ("(3, 5)", (3, 5)),
        ("[1, 2, 3]", [1, 2, 3]),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 4 - 3", 3),          # left-associative
        ("64 / 4 / 2", 8),
        ("7 // 2", 3),
        ("-7 // 2", -4),            # floor division
        ("7 % 3", 1),
        ("-3 + 5", 2),
        ("--3", 3),
        ("2 * -3", -6),
        ("7 / 2", 3.5),
        ("1 / 4", 0.25),
        ("(1 + 1, 6 // 2)", (2, 3)),
    ],
)
def test_constant_expressions(text, expected):
    result = value(text)
    assert result == expected
    assert type(result) is type(expected)


def test_exact_division_of_whole_numbers_is_a_whole_number():
    assert value("64 / 2") == 32 and type(value("64 / 2")) is int
    assert value("c / 2", c=128) == 64 and type(value("c / 2", c=128)) is int
    # beyond float precision the quotient is still exact
    assert value("c / 1", c=2**53 + 1) == 2**53 + 1
    assert value("c / 3", c=3 * (10**30 + 7)) == 10**30 + 7
    # a float operand keeps a float result
    assert type(value("6.0 / 2")) is float


def test_names_from_the_environment():
    assert value("c * 4", c=16) == 64
    assert value("c // 2 + d", c=9, d=1) == 5
    assert value("(k, k)", k=5) == (5, 5)


def test_bare_word_is_a_symbol():
    assert value("same") == Symbol("same")
    assert value("c", c=Symbol("valid")) == Symbol("valid")


def test_unknown_name_in_arithmetic():
    with pytest.raises(CnnError) as caught:
        value("chanels * 2", channels=4)
    assert caught.value.message == "unknown name 'chanels'; did you mean 'channels'?"
    assert (caught.value.span.line, caught.value.span.column) == (3, 7)


def test_arithmetic_needs_numbers():
    for text in ("3x3 * 2", "true + 1", '"a" + 1', "-(1, 2)", "[1] * 2"):
        with pytest.raises(CnnError) as caught:
            value(text)
        assert "arithmetic needs numbers" in caught.value.message, text


@pytest.mark.parametrize("text", ["1 / 0", "1 // 0", "5 % 0", "1 / 0.0", "c / (c - c)"])
def test_division_by_zero(text):
    with pytest.raises(CnnError) as caught:
        value(text, c=3)
    assert "division by zero" in caught.value.message


def test_overflow_is_an_error_not_a_crash():
    big = 10**400
    with pytest.raises(CnnError) as caught:
        value("c / 3", c=big)
    assert "too large" in caught.value.message
    with pytest.raises(CnnError):
        value("c * 0.5", c=big)


def test_unknown_name_helper():
    assert unknown_name("x", {}) == "unknown name 'x'"
    assert unknown_name("strid", {"stride": 1}) == "unknown name 'strid'; did you mean 'stride'?"
