"""Lowering: a parsed program → the graph IR, instantiating blocks with their arguments."""

from __future__ import annotations

import contextlib
import difflib
import math
from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any, Iterator, MutableMapping

import networkx as nx

from . import ir
from . import syntax as s
from .errors import CnnError, Span
from .evaluate import evaluate, unknown_name
from .layers import REGISTRY, ArgumentError, LayerType, ShapeError, Symbol, format_shape
from .layers.base import count, describe, natural
from .layers.conv import Conv, Conv1d
from .layers.norm import BatchNorm
from .loader import BoundBlock, Program


# A guard against runaway counts (`* 99999999`), far above any real network's depth.
MAX_REPEAT = 10_000
# Limits on what a model may expand to, checked while expanding so that a runaway model
# (`repeat 1000 { repeat 1000 { ... } }`, blocks that call blocks ten times over) stops at once
# with the arithmetic, instead of filling memory. ResNet-1001 has about 3,000 layers.
MAX_LAYERS = 10_000
# Statements, calls and repetitions expanded: bounds the work of blocks that add no layers.
MAX_EXPANSION_STEPS = 100_000
# Blocks, branches, residuals and repeats nested inside each other once blocks are expanded
# (each level is a few frames of recursion in lowering).
MAX_EXPANSION_DEPTH = 50


@dataclass
class _Scope:
    """A naming scope: the network body, a block instance or a labelled repetition."""

    path: tuple[str, ...]
    env: dict[str, Any]  # block parameters
    names: MutableMapping[str, str]  # labels usable in `from` → node id
    blocks: dict[str, BoundBlock]
    call_stack: tuple[Span, ...]
    reserved: set[str]  # labels written in this scope, kept free of automatic names
    taken: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def local_name(self, base: str, label: str | None, span: Span) -> str:
        if label is not None:
            if label in self.taken:
                raise CnnError(f"the name '{label}' is used twice in this scope", span)
            self.taken.add(label)
            return label
        number = self.counters.get(base, 0)
        while True:
            number += 1
            candidate = f"{base}{number}"
            if candidate not in self.taken and candidate not in self.reserved:
                break
        self.counters[base] = number
        self.taken.add(candidate)
        return candidate

    def node_id(self, local: str) -> str:
        return "/".join(self.path + (local,))


def _items(stmts: list[s.Stmt], into_groups: bool = True) -> Iterator[s.Item]:
    """Every item written in a statement list, nested branches, bodies and shortcuts included.

    With ``into_groups`` false, the inside of a labelled repetition (a naming scope of its own)
    is skipped, though the repetition itself is yielded.
    """
    for stmt in stmts:
        for item in stmt.items if isinstance(stmt, s.Chain) else []:
            yield item
            if isinstance(item, s.Concat):
                for branch in item.branches:
                    yield from _items(branch, into_groups)
            elif isinstance(item, s.Residual):
                yield from _items(item.body, into_groups)
                if isinstance(item.shortcut, list):
                    yield from _items(item.shortcut, into_groups)
            elif isinstance(item, s.Repeat) and (into_groups or item.label is None):
                yield from _items(item.body, into_groups)


def _labels(stmts: list[s.Stmt]) -> Iterator[str]:
    """Labels written in one naming scope."""
    return (item.label for item in _items(stmts, into_groups=False) if item.label is not None)


class _Lowering:
    def __init__(self, program: Program, input_shape: tuple[int, ...] | None):
        self.program = program
        self.input_override = input_shape
        network = program.module.network
        self.graph = ir.new_graph(network.name)
        self.active: list[str] = []  # blocks being instantiated, to catch recursion
        self.shapes: dict[str, tuple[int, ...] | None] = {}
        self.explicit_outputs: list[str] | None = None
        self.expansion = _Expansion()
        # Errors of statements that failed; lowering goes on with the next statement, as a
        # compiler does, so one mistake does not hide the next.
        self.errors: list[CnnError] = []

    # -- entry
    def run(self) -> nx.DiGraph:
        network = self.program.module.network
        scope = _Scope((), {}, {}, self.program.blocks, (), set(_labels(network.body)))
        current = self.body(network.body, scope, None, network=True)
        if self.errors:
            return self.graph
        if self.graph.graph["input"] is None:
            raise CnnError(f"network '{network.name}' declares no input; start it with e.g. 'input 3x224x224'", network.span)
        if self.explicit_outputs is not None:
            outputs = self.explicit_outputs
        else:
            sinks = [n for n in ir.ordered(self.graph) if self.graph.out_degree(n) == 0]
            outputs = [current] + [n for n in sinks if n != current]
        self.graph.graph["outputs"] = outputs
        return self.graph

    # -- statements
    def body(self, stmts: list[s.Stmt], scope: _Scope, current: str | None, network: bool = False) -> str | None:
        with self.expansion.nested(stmts[0].span if stmts else None):
            return self._body(stmts, scope, current, network)

    def _body(self, stmts: list[s.Stmt], scope: _Scope, current: str | None, network: bool) -> str | None:
        for position, stmt in enumerate(stmts):
            self.expansion.step(stmt.span)
            try:
                if isinstance(stmt, s.InputStmt):
                    current = self.input(stmt, scope, network, position)
                elif isinstance(stmt, s.OutputStmt):
                    self.outputs(stmt, scope, network)
                else:
                    current = self.chain(stmt, scope, current)
            except ExpansionLimit as error:
                if not error.placed:  # the innermost statement names the block calls around it
                    self.note_calls(error, scope)
                    error.placed = True
                raise  # going on would expand the runaway model the limit stopped
            except CnnError as error:
                current = self.failed(stmt, scope, current, error)
        return current

    def failed(self, stmt: s.Stmt, scope: _Scope, current: str | None, error: CnnError) -> str:
        """Record the error of a statement and stand a placeholder for what it would have made:
        the placeholder has no shape, so nothing computed from it is checked (and no error
        follows from the first one), while independent statements still are."""
        self.note_calls(error, scope)
        if not any(e.span == error.span and e.message == error.message for e in self.errors):
            self.errors.append(error)  # once, though a broken block may be used many times
        inputs = [current] if current is not None else []
        placeholder = ir.add_layer(self.graph, scope.node_id(f"error!{len(self.graph)}"), "error", None,
                                   inputs, stmt.span, scope.call_stack, scope.path)
        for label in _labels([stmt]):
            scope.names.setdefault(label, placeholder)
        return placeholder

    def note_calls(self, error: CnnError, scope: _Scope) -> None:
        for call, block in ir.enclosing_calls(self.graph, scope.path, scope.call_stack):
            error.with_note(call, f"in block '{block}' used here")

    def input(self, stmt: s.InputStmt, scope: _Scope, network: bool, position: int) -> str:
        if not network:
            raise CnnError("'input' belongs in a network; a block's input is the tensor it is applied to", stmt.span)
        if self.graph.graph["input"] is not None or position != 0:
            raise CnnError("'input' must be the first statement of the network, and appear once", stmt.span)
        value = evaluate(stmt.shape, scope.env)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (value,)
        if not isinstance(value, tuple) or not 1 <= len(value) <= 3:
            raise CnnError(f"expected an input size such as 3x224x224 (C x H x W) or 1x128 (C x L), got {describe(value)}", stmt.shape.span)
        try:
            shape = tuple(count(v) for v in value)
        except ValueError as error:
            raise CnnError(f"input size: {error}", stmt.shape.span) from None
        node = ir.add_layer(self.graph, "input", "input", None, [], stmt.span)
        self.graph.nodes[node]["shape"] = self.input_override or shape
        self.graph.graph["input"] = node
        scope.taken.add("input")
        scope.names["input"] = node
        return node

    def outputs(self, stmt: s.OutputStmt, scope: _Scope, network: bool) -> None:
        if not network:
            raise CnnError("'output' belongs in a network; a block's output is its last tensor", stmt.span)
        if self.explicit_outputs is not None:
            raise CnnError("the network's outputs are already declared", stmt.span)
        self.explicit_outputs = [self.reference(name, span, scope) for name, span in stmt.names]

    def reference(self, name: str, span: Span, scope: _Scope) -> str:
        if name in scope.names:
            return scope.names[name]
        if name in scope.reserved:
            raise CnnError(f"'{name}' is used before the line that defines it", span)
        hint = difflib.get_close_matches(name, list(scope.names), n=1)
        raise CnnError(
            f"no tensor named '{name}' here" + (f"; did you mean '{hint[0]}'?" if hint else "; label a layer with 'name: layer' to refer to it"),
            span,
        )

    def chain(self, chain: s.Chain, scope: _Scope, current: str | None) -> str:
        if chain.sources is not None:
            inputs = [self.reference(name, span, scope) for name, span in chain.sources]
            if not chain.items:
                if len(inputs) > 1:
                    raise CnnError("'from' with several tensors must lead into a layer that joins them, such as add or concat", chain.span)
                return inputs[0]
        else:
            if current is None:
                raise CnnError("this layer has no input: start the network with e.g. 'input 3x224x224'", chain.span)
            inputs = [current]
        made = []
        for item in chain.items:
            inputs = [self.item(item, scope, inputs)]
            made.append(inputs[0])
        if len(made) > 1 and chain.items[0].label is not None:
            # For the warnings of passes/lint.py: a label names the first layer of its chain,
            # which a reader may take for the chain's end.
            self.graph.graph.setdefault("labelled_heads", {})[made[-1]] = (chain.items[0].label, made[0])
        return inputs[0]

    # -- items
    def item(self, item: s.Item, scope: _Scope, inputs: list[str]) -> str:
        if isinstance(item, s.Call):
            if item.repeat is not None:
                return self.repeated(item, item.label, item.repeat, scope, inputs,
                                     lambda inner, x: self.call(item, inner, x, label=None))
            return self.call(item, scope, inputs, item.label)
        if len(inputs) != 1:
            raise CnnError(f"this takes one input, but 'from' gives {len(inputs)}", item.span)
        if isinstance(item, s.Repeat):
            return self.repeated(item, item.label, item.count, scope, inputs,
                                 lambda inner, x: self.body(item.body, inner, x[0]))
        if isinstance(item, s.Concat):
            outputs = [self.body(branch, scope, inputs[0]) for branch in item.branches]
            return self.layer_node(REGISTRY["concat"](), "concat", item.label, item.span, scope, outputs)
        if isinstance(item, s.Residual):
            return self.residual(item, scope, inputs[0])
        raise TypeError(item)

    def repeated(self, item, label, times_expr, scope: _Scope, inputs: list[str], once) -> str:
        times = evaluate(times_expr, scope.env)
        try:
            times = natural(times)
        except ValueError as error:
            raise CnnError(f"repeat count: {error}", times_expr.span) from None
        if times > MAX_REPEAT:
            raise CnnError(f"repeat count {times} is more than {MAX_REPEAT}", times_expr.span)
        if times > 1 and isinstance(item, s.Repeat):
            labels = list(_labels(item.body))
            if labels:
                raise CnnError(
                    f"the label '{labels[0]}' inside a repeated body would name a new tensor on every pass; "
                    "put the body in a block and repeat the block",
                    item.span,
                )
        inner = scope
        if label is not None:
            local = scope.local_name("group", label, item.span)
            # Labels written in a labelled `repeat` body belong to the group: keep automatic names off them.
            reserved = set(_labels(item.body)) if isinstance(item, s.Repeat) else set()
            inner = _Scope(scope.path + (local,), scope.env, ChainMap({}, scope.names), scope.blocks,
                           scope.call_stack, reserved)
            what = item.name if isinstance(item, s.Call) else "repeat"
            self.graph.graph["scopes"][inner.path] = ir.Scope(inner.path, None, f"{what} * {times}", item.span)
        with self.expansion.repeating(times, item.span, f"{item.name}() *" if isinstance(item, s.Call) else "repeat"):
            for _ in range(times):
                self.expansion.next_pass(item.span)
                inputs = [once(inner, inputs)]
        if label is not None:
            scope.names[label] = inputs[0]
        return inputs[0]

    def call(self, call: s.Call, scope: _Scope, inputs: list[str], label: str | None) -> str:
        if call.name in scope.blocks:
            return self.instantiate(call, scope.blocks[call.name], scope, inputs, label)
        if call.name not in REGISTRY:
            known = sorted(set(REGISTRY) | set(scope.blocks))
            hint = difflib.get_close_matches(call.name, known, n=1)
            raise CnnError(
                f"unknown layer or block '{call.name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""), call.span
            )
        layer_type = REGISTRY[call.name]
        positional, keywords, spans, values = self.arguments(call, scope)
        try:
            layer = layer_type.bind(positional, keywords)
        except ArgumentError as error:
            span, message = call.span, str(error)
            if error.index is not None and error.index < len(spans):
                span = spans[error.index]
                value = values[error.index]
                if isinstance(value, Symbol) and value.name not in ("same", "valid"):
                    message = unknown_name(value.name, scope.env)
            raise CnnError(message, span) from None
        return self.layer_node(layer, layer_type.op, label, call.span, scope, inputs)

    def arguments(self, call: s.Call, scope: _Scope):
        positional, keywords, spans, values = [], {}, [], []
        ordered_args = [a for a in call.args if a.keyword is None] + [a for a in call.args if a.keyword is not None]
        for position, argument in enumerate(call.args):
            if argument.keyword is None and any(a.keyword is not None for a in call.args[:position]):
                raise CnnError("a positional argument cannot follow a keyword argument", argument.span)
        for argument in ordered_args:
            value = evaluate(argument.value, scope.env)
            if argument.keyword is None:
                positional.append(value)
            else:
                if argument.keyword in keywords:
                    raise CnnError(f"argument '{argument.keyword}' is given twice", argument.span)
                keywords[argument.keyword] = value
            spans.append(argument.span)
            values.append(value)
        return positional, keywords, spans, values

    def layer_node(self, layer: LayerType, base: str, label: str | None, span: Span, scope: _Scope, inputs: list[str]) -> str:
        count_ = len(inputs)
        if count_ < layer.min_inputs or (layer.max_inputs is not None and count_ > layer.max_inputs):
            if layer.max_inputs == 1:
                wanted = "one input"
            else:
                wanted = f"at least {layer.min_inputs} inputs"
            hint = " (write 'from a, b -> add')" if layer.op in ("add", "concat") else ""
            raise CnnError(f"{layer.op} takes {wanted}, got {count_}{hint}", span)
        self.expansion.add_layer(span)
        local = scope.local_name(base, label, span)
        node = ir.add_layer(self.graph, scope.node_id(local), layer.op, layer, inputs, span, scope.call_stack, scope.path)
        if label is not None:
            scope.names[label] = node
        return node

    # -- blocks
    def instantiate(self, call: s.Call, bound: BoundBlock, scope: _Scope, inputs: list[str], label: str | None) -> str:
        definition = bound.definition
        if len(inputs) != 1:
            raise CnnError(f"block '{definition.name}' takes one input, but 'from' gives {len(inputs)}", call.span)
        if definition.name in self.active:
            raise CnnError(f"block '{definition.name}' uses itself (through {' -> '.join(self.active)})", call.span)
        env = self.bind_block(call, definition, scope)
        local = scope.local_name(definition.name, label, call.span)
        inner = _Scope(scope.path + (local,), env, {"input": inputs[0]}, bound.namespace,
                       scope.call_stack + (call.span,), set(_labels(definition.body)) | {"input"})
        inner.taken.add("input")
        self.graph.graph["scopes"][inner.path] = ir.Scope(
            inner.path, definition.name, _signature(definition, env), call.span, dict(env)
        )
        self.active.append(definition.name)
        try:
            output = self.body(definition.body, inner, inputs[0])
        finally:
            self.active.pop()
        if label is not None:
            scope.names[label] = output
        return output

    def bind_block(self, call: s.Call, definition: s.BlockDef, scope: _Scope) -> dict[str, Any]:
        params = {p.name: p for p in definition.params}
        given: dict[str, Any] = {}
        for position, argument in enumerate(call.args):
            # As for layers: `b(s = 2, 8)` is rejected rather than read as `b(8, s = 2)`.
            if argument.keyword is None and any(a.keyword is not None for a in call.args[:position]):
                raise CnnError("a positional argument cannot follow a keyword argument", argument.span)
        positional = [a for a in call.args if a.keyword is None]
        if len(positional) > len(definition.params):
            raise CnnError(
                f"block '{definition.name}' takes {len(definition.params)} argument(s), got {len(positional)}",
                positional[len(definition.params)].span,
            ).with_note(definition.span, f"'{definition.name}' is defined here")
        for param, argument in zip(definition.params, positional):
            given[param.name] = evaluate(argument.value, scope.env)
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
            given[argument.keyword] = evaluate(argument.value, scope.env)
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

    # -- residuals
    def residual(self, item: s.Residual, scope: _Scope, source: str) -> str:
        body_out = self.body(item.body, scope, source)
        if item.shortcut is None or item.shortcut == "identity":
            shortcut = source
        elif item.shortcut == "auto":
            shortcut = self.projection(item, scope, source, body_out)
        elif isinstance(item.shortcut, list):
            shortcut = self.body(item.shortcut, scope, source)
        else:
            raise CnnError(
                f"unknown shortcut '{item.shortcut}': write 'shortcut auto', 'shortcut identity' or 'shortcut {{ layers }}'",
                item.shortcut_span,
            )
        node = self.layer_node(REGISTRY["add"](), "add", item.label, item.span, scope, [body_out, shortcut])
        self.graph.nodes[node]["shortcut"] = "identity" if shortcut == source else "projection"
        return node

    def projection(self, item: s.Residual, scope: _Scope, source: str, body_out: str) -> str:
        """``shortcut auto``: identity when shapes agree, else 1x1 conv (stride to fit) + batchnorm."""
        have, want = self.shape(source), self.shape(body_out)
        if have is None or want is None or have == want:
            return source  # shape inference reports whatever went wrong upstream
        if len(have) != len(want) or len(have) < 2:
            raise CnnError(
                f"shortcut auto cannot project {format_shape(have)} to {format_shape(want)}: it needs spatial tensors of one rank",
                item.shortcut_span,
            )
        strides = []
        for before, after in zip(have[1:], want[1:]):
            # ceil(before / st) falls as st grows, so ceil(before / after) is the only candidate
            # (a search over every stride would hang on very large inputs).
            stride = -(-before // after) if after >= 1 else None
            if stride is None or -(-before // stride) != after:
                raise CnnError(
                    f"shortcut auto cannot project {format_shape(have)} to {format_shape(want)}: no stride of a 1x1 "
                    f"convolution maps {before} to {after}; write the shortcut yourself",
                    item.shortcut_span,
                )
            strides.append(stride)
        conv_type = Conv if len(have) == 3 else Conv1d
        # One stride for all axes is written once, as a user would (`stride = 2`).
        stride = (strides[0],) if len(set(strides)) == 1 else tuple(strides)
        conv = conv_type.bind([want[0], (1,)], {"stride": stride, "bias": False})
        node = self.layer_node(conv, "shortcut_conv", None, item.shortcut_span, scope, [source])
        return self.layer_node(BatchNorm(), "shortcut_bn", None, item.shortcut_span, scope, [node])

    def shape(self, node: str) -> tuple[int, ...] | None:
        """Shape of an already-built node, computed on demand (only ``shortcut auto`` needs it
        while lowering; the shape pass recomputes every shape and reports errors)."""
        # Iterative (not recursive): a long chain before a residual must not hit the recursion limit.
        stack = [node]
        while stack:
            current = stack[-1]
            if current in self.shapes:
                stack.pop()
                continue
            data = self.graph.nodes[current]
            missing = [i for i in data["inputs"] if i not in self.shapes]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            if data["layer"] is None:
                result = data.get("shape")  # none for a failed statement's placeholder
            else:
                inputs = [self.shapes[i] for i in data["inputs"]]
                try:
                    result = None if None in inputs else data["layer"].output_shape(inputs)
                except ShapeError:
                    result = None
            self.shapes[current] = result
        return self.shapes[node]


class ExpansionLimit(CnnError):
    """A limit on what a model expands to was passed: lowering stops at once instead of going on
    with the next statement, as it does after other errors."""

    placed = False  # whether the block calls around it are noted yet


class _Expansion:
    """Counts what lowering expands (layers, steps, nesting) and stops it, with the arithmetic,
    as soon as a limit is certain to be passed."""

    def __init__(self) -> None:
        self.layers = 0
        self.steps = 0
        self.depth = 0
        # Repetitions being expanded: [times, pass (0-based), span, what].
        self.repeats: list[list] = []
        self.last_span: Span | None = None  # where an empty body's errors point


    @contextlib.contextmanager
    def nested(self, span: Span | None):
        if self.depth >= MAX_EXPANSION_DEPTH:
            raise ExpansionLimit(
                f"blocks, branches, residuals and repeats nest more than {MAX_EXPANSION_DEPTH} levels deep "
                "once blocks are expanded", span or self.last_span,
            )
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @contextlib.contextmanager
    def repeating(self, times: int, span: Span, what: str):
        self.repeats.append([times, -1, span, what])
        try:
            yield
        finally:
            self.repeats.pop()

    def next_pass(self, span: Span) -> None:
        self.repeats[-1][1] += 1
        self.step(span)

    def step(self, span: Span) -> None:
        self.steps += 1
        self.last_span = span
        if self.steps > MAX_EXPANSION_STEPS:
            raise ExpansionLimit(
                f"expanding this model takes more than {MAX_EXPANSION_STEPS:,} steps (statements, block calls "
                f"and passes of repeats){self._arithmetic()}; a model this large is almost certainly a mistake", span,
            )

    def add_layer(self, span: Span) -> None:
        """Count one layer; fail now when the repetitions around it will certainly repeat it past
        the limit (every remaining pass of a repetition expands its body again, this layer included)."""
        self.layers += 1
        still_to_come, inner = 0, 1
        for times, done, _, _ in reversed(self.repeats):
            still_to_come += (times - done - 1) * inner
            inner *= times
        if self.layers + still_to_come > MAX_LAYERS:
            total = f"{self.layers + still_to_come:,}"
            raise ExpansionLimit(
                f"this model expands to at least {total} layers{self._arithmetic()}; "
                f"a model may have at most {MAX_LAYERS:,}", span,
            )

    def _arithmetic(self) -> str:
        if not self.repeats:
            return f" ({self.layers:,} layers so far, through blocks that call blocks)"
        product = " × ".join(f"{what} {times:,} (line {span.line})" for times, _, span, what in self.repeats)
        copies = math.prod(times for times, _, _, _ in self.repeats)
        return f": {product} = {copies:,} copies of the layer here"


def _signature(definition: s.BlockDef, env: dict[str, Any]) -> str:
    parts = []
    for param in definition.params:
        value = describe(env[param.name])
        if param.default is None:
            parts.append(value)
        elif env[param.name] != evaluate(param.default, env):
            parts.append(f"{param.name}={value}")
    return f"{definition.name}({', '.join(parts)})"


def _nothing_defined(program: Program) -> CnnError:
    return CnnError("this file defines no network and no blocks; start a model with 'network NAME { input ... }'",
                    Span(program.module.file, 1, 1))


def check_blocks(program: Program) -> None:
    """Check what can be checked of blocks without instantiating them: every layer or block they
    call exists. (Shapes need arguments and an input, so a network that uses them is needed.)
    Every unknown name is reported, the first raised with the others in ``others``. A file with
    neither a network nor blocks is an error: it is empty, or holds only comments or imports."""
    if not program.module.blocks:
        raise _nothing_defined(program)
    errors = []
    for bound in program.blocks.values():
        if bound.definition.span.file != program.module.file:
            continue
        for call in _items(bound.definition.body):
            if isinstance(call, s.Call) and call.name not in REGISTRY and call.name not in bound.namespace:
                known = sorted(set(REGISTRY) | set(bound.namespace))
                hint = difflib.get_close_matches(call.name, known, n=1)
                errors.append(CnnError(
                    f"unknown layer or block '{call.name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                    call.span,
                ))
    if errors:
        errors[0].others = errors[1:]
        raise errors[0]


def _use_site(error: CnnError) -> tuple[int, int]:
    """Where the network meets this error: the outermost block call, or the error itself (for
    reporting in file order)."""
    calls = [note.span for note in error.notes if note.message.startswith("in block ") and note.span]
    span = calls[-1] if calls else error.span
    return (span.line, span.column) if span else (0, 0)


def lower(program: Program, input_shape: tuple[int, ...] | None = None) -> nx.DiGraph:
    """Build the IR of the program's network; raises :class:`CnnError` for structural errors."""
    if program.module.network is None:
        if not program.module.blocks:
            raise _nothing_defined(program)
        raise CnnError("this file defines no network (only blocks); add 'network NAME { input ... }'",
                       Span(program.module.file, 1, 1))
    lowering = _Lowering(program, input_shape)
    graph = lowering.run()
    if lowering.errors:
        # The shape errors of what did lower are independent of these (the placeholders have
        # no shape): report them too, all in the order of the network's lines.
        from .passes.shapes import infer_shapes

        errors = [*lowering.errors, *infer_shapes(graph).graph["errors"]]
        first, *others = sorted(errors, key=_use_site)
        first.others = others
        raise first
    return graph
