"""Lowering: a parsed program → the graph IR, instantiating blocks with their arguments.

Naming scopes are in scopes.py, the expansion limits in expansion.py, call-argument binding
(layers and blocks alike) in call_arguments.py; what remains is one recursive walk over
statements, chains, blocks and residuals, with its recovery after an error (~410 lines: it reads
best as one class).
"""

from __future__ import annotations

import difflib
from collections import ChainMap

import networkx as nx

from . import ir
from . import syntax as s
from .call_arguments import bind_block, block_signature, layer_arguments
from .errors import CnnError, Span
from .evaluate import evaluate, unknown_name
from .layers import REGISTRY, ArgumentError, LayerType, ShapeError, Symbol, format_shape
from .layers.base import count, describe, natural
from .layers.conv import Conv, Conv1d
from .layers.norm import BatchNorm
from .expansion import MAX_EXPANSION_DEPTH, MAX_LAYERS, MAX_REPEAT  # noqa: F401  (the limits, named here too)
from .expansion import Expansion as _Expansion
from .expansion import ExpansionLimit
from .loader import BoundBlock, Program
from .scopes import NameScope as _Scope
from .scopes import items as _items
from .scopes import labels as _labels


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
        positional, keywords, spans, values = layer_arguments(call, scope.env)
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
        env = bind_block(call, definition, scope.env)
        local = scope.local_name(definition.name, label, call.span)
        inner = _Scope(scope.path + (local,), env, {"input": inputs[0]}, bound.namespace,
                       scope.call_stack + (call.span,), set(_labels(definition.body)) | {"input"})
        inner.taken.add("input")
        self.graph.graph["scopes"][inner.path] = ir.Scope(
            inner.path, definition.name, block_signature(definition, env), call.span, dict(env)
        )
        self.active.append(definition.name)
        try:
            output = self.body(definition.body, inner, inputs[0])
        finally:
            self.active.pop()
        if label is not None:
            scope.names[label] = output
        return output

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
