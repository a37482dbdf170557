"""Evaluation of argument expressions: numbers, sizes and arithmetic on block parameters."""

from __future__ import annotations

import difflib
import operator
from typing import Any, Mapping

from . import syntax as s
from .errors import CnnError
from .layers import Symbol
from .layers.base import describe

_OPERATORS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}


def unknown_name(name: str, known: Mapping[str, Any]) -> str:
    hint = difflib.get_close_matches(name, list(known), n=1)
    return f"unknown name '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")


def evaluate(expr: s.Expr, env: Mapping[str, Any]) -> Any:
    """The value of ``expr`` with block parameters bound in ``env``.

    A bare word that is no parameter becomes a :class:`Symbol` (``pad = same``); layer argument
    binding decides whether that word means anything there.
    """
    if isinstance(expr, s.Literal):
        return expr.value
    if isinstance(expr, s.NameRef):
        return env[expr.name] if expr.name in env else Symbol(expr.name)
    if isinstance(expr, s.TupleExpr):
        return tuple(evaluate(item, env) for item in expr.items)
    if isinstance(expr, s.ListExpr):
        return [evaluate(item, env) for item in expr.items]
    if isinstance(expr, s.Neg):
        value = evaluate(expr.operand, env)
        _check_number(value, expr.operand, env)
        return -value
    if isinstance(expr, s.BinOp):
        left, right = evaluate(expr.left, env), evaluate(expr.right, env)
        _check_number(left, expr.left, env)
        _check_number(right, expr.right, env)
        if expr.op in ("/", "//", "%") and right == 0:
            raise CnnError(f"division by zero in '{expr.op}'", expr.span)
        try:
            if expr.op == "/" and isinstance(left, int) and isinstance(right, int) and left % right == 0:
                value = left // right  # exact, even beyond float precision
            else:
                value = _OPERATORS[expr.op](left, right)
        except OverflowError:
            raise CnnError(f"the result of '{expr.op}' is too large to compute", expr.span) from None
        # 64 / 2 is the size 32, not 32.0.
        if isinstance(value, float) and value.is_integer() and isinstance(left, int) and isinstance(right, int):
            value = int(value)
        return value
    raise TypeError(f"not an expression: {expr!r}")


def _check_number(value: Any, expr: s.Expr, env: Mapping[str, Any]) -> None:
    if isinstance(value, Symbol):
        raise CnnError(unknown_name(value.name, env), expr.span)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CnnError(f"arithmetic needs numbers, but this is {describe(value)}", expr.span)
