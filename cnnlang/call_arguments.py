"""Binding the arguments of a call, ``name(args, key = value)``, for layers and for blocks alike:
one order rule (no positional argument after a keyword one), one 'given twice' rule."""

from __future__ import annotations

import difflib
from typing import Any

from . import syntax as s
from .errors import CnnError
from .evaluate import evaluate
from .layers.base import describe


def check_argument_order(call: s.Call) -> None:
    """A positional argument after a keyword one is an error (never silently reordered)."""
    for position, argument in enumerate(call.args):
        if argument.keyword is None and any(a.keyword is not None for a in call.args[:position]):
            raise CnnError("a positional argument cannot follow a keyword argument", argument.span)


def layer_arguments(call: s.Call, env: dict[str, Any]):
    """(positional values, keyword values, span and value of each argument, positional first)
    of a layer call, evaluated in ``env``."""
    check_argument_order(call)
    positional, keywords, spans, values = [], {}, [], []
    for argument in [a for a in call.args if a.keyword is None] + [a for a in call.args if a.keyword is not None]:
        value = evaluate(argument.value, env)
        if argument.keyword is None:
            positional.append(value)
        else:
            if argument.keyword in keywords:
                raise CnnError(f"argument '{argument.keyword}' is given twice", argument.span)
            keywords[argument.keyword] = value
        spans.append(argument.span)
        values.append(value)
    return positional, keywords, spans, values


def bind_block(call: s.Call, definition: s.BlockDef, env_of_call: dict[str, Any]) -> dict[str, Any]:
    """The parameters of block ``definition`` for ``call`` (arguments evaluated in the caller's
    ``env_of_call``, defaults in the block's own)."""
    params = {p.name: p for p in definition.params}
    given: dict[str, Any] = {}
    check_argument_order(call)  # as for layers: `b(s = 2, 8)` is rejected, not read as `b(8, s = 2)`
    positional = [a for a in call.args if a.keyword is None]
    if len(positional) > len(definition.params):
        raise CnnError(
            f"block '{definition.name}' takes {len(definition.params)} argument(s), got {len(positional)}",
            positional[len(definition.params)].span,
        ).with_note(definition.span, f"'{definition.name}' is defined here")
    for param, argument in zip(definition.params, positional):
        given[param.name] = evaluate(argument.value, env_of_call)
    for argument in call.args:
        if argument.keyword is None:
            continue
        if argument.keyword not in params:
            hint = difflib.get_close_matches(argument.keyword, list(params), n=1)
            raise CnnError(
                f"block '{definition.name}' has no parameter '{argument.keyword}'"
                + (f"; did you mean '{hint[0]}'?" if hint else ""),
                argument.span,
            ).with_note(definition.span, f"'{definition.name}' is defined here")
        if argument.keyword in given:
            raise CnnError(f"parameter '{argument.keyword}' is given twice", argument.span)
        given[argument.keyword] = evaluate(argument.value, env_of_call)
    env: dict[str, Any] = {}
    for param in definition.params:
        if param.name in given:
            env[param.name] = given[param.name]
        elif param.default is not None:
            env[param.name] = evaluate(param.default, env)
        else:
            raise CnnError(f"block '{definition.name}' needs the parameter '{param.name}'", call.span).with_note(
                param.span, "declared here"
            )
    return env


def block_signature(definition: s.BlockDef, env: dict[str, Any]) -> str:
    parts = []
    for param in definition.params:
        value = describe(env[param.name])
        if param.default is None:
            parts.append(value)
        elif env[param.name] != evaluate(param.default, env):
            parts.append(f"{param.name}={value}")
    return f"{definition.name}({', '.join(parts)})"
