""".cnn text from recovered items and blocks, and the order in which cnnlang will create the
layers the text describes (to give each imported weight its cnnlang name).

Layers are written with only their non-default arguments; a line holds a layer and the
element-wise layers after it (``conv(64, 3x3, pad = 1) -> batchnorm -> relu``), as the zoo does.
"""

from __future__ import annotations

import re
from dataclasses import MISSING, fields
from typing import Any

from ..layers import REGISTRY
from .blocks import Block, Param
from .onnx_reader import ImportedGraph, Layer
from .structure import Call, Concat, LayerItem, Residual

INDENT = "    "


def value_text(value: Any) -> str:
    if isinstance(value, Param):
        return value.name if value.scale == 1 else f"{value.name} * {value.scale}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if len(value) > 1 else str(value[0])
    if isinstance(value, float):
        return repr(value)
    return str(value)


def layer_text(op: str, values: dict[str, Any]) -> str:
    positional, keywords = [], []
    for f in fields(REGISTRY[op]):
        value = values[f.name]
        if f.metadata.get("positional") and f.default is MISSING:  # required: by position
            positional.append(value_text(value))
        elif isinstance(value, Param) or value != f.default:
            keywords.append(f"{f.name} = {value_text(value)}")
    arguments = positional + keywords
    return f"{op}({', '.join(arguments)})" if arguments else op


def call_text(call: Call) -> str:
    block = call.block
    arguments = []
    for name, value in zip(block.params, call.args):
        if name not in block.defaults:
            arguments.append(value_text(value))
        elif value != block.defaults[name]:
            arguments.append(f"{name} = {value_text(value)}")
    return f"{block.name}({', '.join(arguments)})"


def items_lines(items: list, depth: int) -> list[str]:
    lines: list[str] = []
    pad = INDENT * depth
    after_layer = False  # whether the last line is a layer's, which an element-wise layer continues
    for item in items:
        if isinstance(item, LayerItem):
            text = layer_text(item.op, item.values)
            if after_layer and REGISTRY[item.op].category == "elementwise":
                lines[-1] += f" -> {text}"
            else:
                lines.append(pad + text)
            after_layer = True
            continue
        after_layer = False
        if isinstance(item, Residual):
            lines.append(pad + "residual {")
            lines += items_lines(item.body, depth + 1)
            if item.shortcut is None:
                lines.append(pad + "} shortcut auto")
            else:
                lines.append(pad + "} shortcut {")
                lines += items_lines(item.shortcut, depth + 1)
                lines.append(pad + "}")
        elif isinstance(item, Concat):
            lines.append(pad + "concat {")
            for branch in item.branches:
                if branch:
                    lines.append(pad + INDENT + "branch {")
                    lines += items_lines(branch, depth + 2)
                    lines.append(pad + INDENT + "}")
                else:
                    lines.append(pad + INDENT + "branch { }")
            lines.append(pad + "}")
        elif isinstance(item, Call):
            lines.append(pad + call_text(item))
        elif len(item.body) == 1 and isinstance(item.body[0], Call):
            lines.append(pad + f"{call_text(item.body[0])} * {value_text(item.n)}")
        else:
            lines.append(pad + f"repeat {value_text(item.n)} {{")
            lines += items_lines(item.body, depth + 1)
            lines.append(pad + "}")
    return lines


def block_text(block: Block) -> str:
    params = [p if p not in block.defaults else f"{p} = {value_text(block.defaults[p])}" for p in block.params]
    return "\n".join([f"block {block.name}({', '.join(params)}) {{", *items_lines(block.body, 1), "}"])


def network_text(name: str, input_shape: tuple[int, ...], items: list, blocks: list[Block], header: str) -> str:
    parts = [header] + [block_text(b) + "\n" for b in blocks]
    body = [f"{INDENT}input {'x'.join(map(str, input_shape))}", *items_lines(items, 1)]
    parts.append("\n".join([f"network {name} {{", *body, "}"]))
    return "\n".join(parts) + "\n"


def expand(items: list) -> list[Layer]:
    """The imported layers in the order lowering creates them (body, shortcut, add; branches, concat)."""
    layers: list[Layer] = []
    for item in items:
        if isinstance(item, LayerItem):
            layers.append(item.source)
        elif isinstance(item, Residual):
            layers += expand(item.body) + expand(item.shortcut or item.projection) + [item.merge]
        elif isinstance(item, Concat):
            layers += [layer for branch in item.branches for layer in expand(branch)] + [item.merge]
        elif isinstance(item, Call):
            layers += expand(item.concrete)
        else:
            layers += [layer for each in item.concrete for layer in expand(each)]
    return layers


# ---- the fallback: one named tensor per layer


def flat_text(graph: ImportedGraph, header: str) -> str:
    """Every layer on its own line, labelled, reading its inputs by name where needed."""
    labels = {graph.input: "input"}
    taken = {"input"}
    lines = [f"{INDENT}input {'x'.join(map(str, graph.input_shape))}"]
    previous = graph.input
    for layer in graph.layers:
        label = _label(layer, taken)
        labels[layer.id] = label
        values = {f.name: getattr(layer.layer, f.name) for f in fields(layer.layer)}
        text = layer_text(layer.op, values)
        source = "" if layer.inputs == [previous] else "from " + ", ".join(labels[i] for i in layer.inputs) + " -> "
        lines.append(f"{INDENT}{source}{label}: {text}")
        previous = layer.id
    lines.append(f"{INDENT}output " + ", ".join(labels[o] for o in graph.outputs))
    return "\n".join([header, f"network {graph.name} {{", *lines, "}"]) + "\n"


def _label(layer: Layer, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", layer.onnx_name or layer.id).strip("_") or layer.op
    if not base[0].isalpha():
        base = f"{layer.op}_{base}"
    label, number = base, 1
    while label in taken or label in REGISTRY or label in _KEYWORDS:
        number += 1
        label = f"{base}_{number}"
    taken.add(label)
    return label


_KEYWORDS = {"input", "output", "from", "import", "block", "network", "residual", "shortcut", "concat", "branch",
             "repeat", "true", "false", "auto", "identity"}
