"""Summaries of a compiled model: rows grouped by block, totals, and the JSON form."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TYPE_CHECKING

from . import ir
from .layers import format_shape

if TYPE_CHECKING:  # type hints only, so that this module stays below cnnlang.model
    from .model import Model


@dataclass
class Row:
    name: str
    op: str
    shape: tuple[int, ...] | None
    params: int
    macs: int
    depth: int  # indentation: how many blocks enclose it
    is_block: bool
    rf: tuple[int, ...] | None = None
    explain: str = ""
    line: int | None = None
    node: str = ""  # the full name with its block path (``basic2/conv1``); a block row's path


def _scope_totals(model: Model) -> dict[tuple[str, ...], dict[str, Any]]:
    graph = model.graph
    totals: dict[tuple[str, ...], dict[str, Any]] = {}
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        for end in range(1, len(data["path"]) + 1):
            entry = totals.setdefault(data["path"][:end], {"params": 0, "macs": 0, "last": None})
            entry["params"] += data.get("params", 0)
            entry["macs"] += data.get("macs", 0)
            entry["last"] = node
    return totals


def rows(model: Model, depth: int | None = None, explain: bool = False) -> list[Row]:
    """One row per layer, under a row per block. With ``depth`` N, a layer inside N or more
    blocks folds into the row of its enclosing block at depth N (1: one row per top-level block)."""
    graph = model.graph
    scopes = graph.graph["scopes"]
    totals = _scope_totals(model)
    out: list[Row] = []
    opened: set[tuple[str, ...]] = set()
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        path = data["path"]
        shown = path if depth is None else path[:depth]
        for end in range(1, len(shown) + 1):
            prefix = shown[:end]
            if prefix in opened:
                continue
            opened.add(prefix)
            last = graph.nodes[totals[prefix]["last"]]
            out.append(Row(prefix[-1], scopes[prefix].signature, last.get("shape"), totals[prefix]["params"],
                           totals[prefix]["macs"], end - 1, True, last.get("rf"), line=scopes[prefix].span.line,
                           node="/".join(prefix)))
        if depth is not None and len(path) >= depth:
            continue  # drawn as part of its block's row
        layer = data["layer"]
        how = ""
        if explain and layer is not None and data.get("shape") is not None:
            how = layer.explain([graph.nodes[i]["shape"] for i in data["inputs"]], data["shape"])
        out.append(Row(node.rsplit("/", 1)[-1], layer.label() if layer else "input", data.get("shape"),
                       data.get("params", 0), data.get("macs", 0), len(path), False, data.get("rf"), how,
                       data["span"].line, node))
    return out


def _layer_entry(graph, node: str) -> dict[str, Any]:
    data = graph.nodes[node]
    return {
        "name": node,
        "op": data["op"],
        "label": data["layer"].label() if data["layer"] else "input",
        "inputs": data["inputs"],
        "output_shape": list(data.get("shape") or []),
        "params": data.get("params", 0),
        "trainable_params": data.get("trainable", 0),
        "buffers": data.get("buffers", 0),
        "macs": data.get("macs", 0),
        "receptive_field": list(data.get("rf") or []),
        "block": "/".join(data["path"]),
        "file": data["span"].file,
        "line": data["span"].line,
    }


def _row_entry(row: Row) -> dict[str, Any]:
    return {"name": row.node, "kind": "block" if row.is_block else "layer", "label": row.op,
            "output_shape": list(row.shape or []), "params": row.params, "macs": row.macs,
            "receptive_field": list(row.rf or []), "depth": row.depth, "line": row.line}


def to_json(model: Model, depth: int | None = None) -> dict[str, Any]:
    """The summary as JSON data. ``layers`` has every layer; with ``depth``, the table's rows
    instead: blocks nested deeper than ``depth`` fold into their block's row (``kind`` "block")."""
    graph = model.graph
    totals = model.totals
    if depth is None:
        layers = [_layer_entry(graph, node) for node in ir.ordered(graph)]
    else:
        layers = [_row_entry(row) for row in rows(model, depth)]
    scope_totals = _scope_totals(model)
    blocks = [
        {"path": "/".join(path), "block": scope.block, "call": scope.signature, "line": scope.span.line,
         "params": scope_totals.get(path, {}).get("params", 0), "macs": scope_totals.get(path, {}).get("macs", 0)}
        for path, scope in graph.graph["scopes"].items()
    ]
    return {
        "name": model.name,
        "input_shape": list(model.input_shape),
        "output_shape": list(model.output_shape),
        "outputs": [{"name": n, "shape": list(graph.nodes[n]["shape"])} for n in graph.graph["outputs"]],
        "total_params": totals["params"],
        "trainable_params": totals["trainable"],
        "non_trainable_params": totals["params"] - totals["trainable"],
        "buffers": totals["buffers"],
        "total_macs": totals["macs"],
        "activation_values": totals["activations"],
        "activation_bytes": totals["activation_bytes"],
        "layers": layers,
        "blocks": blocks,
    }


def outputs_text(model: Model) -> str:
    """``output 1000``, or with several outputs each by name: ``outputs seg 2x8x8, cls 3``."""
    graph = model.graph
    names = graph.graph["outputs"]
    if len(names) == 1:
        return f"output {format_shape(graph.nodes[names[0]]['shape'])}"
    return "outputs " + ", ".join(f"{name} {format_shape(graph.nodes[name]['shape'])}" for name in names)


def human(number: float, unit: str = "") -> str:
    if abs(number) >= 1e15:
        # Integer counts of absurd models exceed what a float holds; the digit count still says it.
        exponent = len(str(abs(int(number)))) - 1 if abs(number) < 10**4000 else None
        return f"about 10^{exponent} {unit}".rstrip() if exponent is not None else f"more than 10^4000 {unit}".rstrip()
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= scale:
            return f"{number / scale:.2f} {suffix}{unit}"
    return f"{number:g} {unit}".rstrip()


def peak_memory_line(memory: dict[str, Any], batch: int = 1, itemsize: int = 4) -> str:
    """``peak activation memory (batch 1, float32): before planning X MB, after Y MB (−Z%)``
    from the ``memory`` plan of an optimised graph."""
    before, after = memory["before"] * batch * itemsize, memory["after"] * batch * itemsize
    cut = 100 * (1 - after / before) if before else 0.0
    dtype = {4: "float32", 8: "float64"}.get(itemsize, f"{itemsize}-byte values")
    return (f"peak activation memory (batch {batch}, {dtype}): before planning {human(before, 'B')}, "
            f"after {human(after, 'B')} (−{cut:.0f}%)")
