"""Totals views of ``cnnlang summary``: several models side by side (``summary A B``) and one
model's parameters and MACs by layer type (``--by-op``)."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from .. import ir
from ..errors import UsageError
from ..layers import format_shape
from ..model import Model, load
from ..report import human, to_json


def add_totals_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "others", nargs="*", metavar="MORE",
        help="more models to compare with MODEL: one row of totals each, and each one's ratio to MODEL",
    )
    parser.add_argument("--by-op", action="store_true",
                        help="after the table, the parameters and MACs of each layer type and their share")


def compare(args: argparse.Namespace) -> int:
    """``cnnlang summary A B ...``: the totals of each model and their ratios to the first."""
    if args.depth is not None or args.explain or args.by_op:
        raise UsageError("--depth, --explain and --by-op describe one model; give one MODEL for them")
    models = [load(name, input_shape=args.input) for name in [args.model, *args.others]]
    if args.json:
        print(json.dumps([to_json(model) for model in models], indent=2))
        return 0
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160  # as summary's table: whole rows in pipes and files
    first = models[0]
    table = Table(show_edge=False, pad_edge=False)
    for column in ("Model", "Input", "Output"):
        table.add_column(column)
    for column in ("Params", "vs first", "MACs", "vs first", "Activations"):
        table.add_column(column, justify="right", no_wrap=True)
    for model in models:
        totals = model.totals
        table.add_row(
            model.name, format_shape(model.input_shape), format_shape(model.output_shape),
            f"{totals['params']:,}", _ratio(totals["params"], first.totals["params"]),
            f"{totals['macs']:,}", _ratio(totals["macs"], first.totals["macs"]),
            f"{totals['activations']:,}",
        )
    console.print(table)
    for model in models[1:]:
        console.print(f"{model.name} vs {first.name}: {_relation(model, first, 'params', 'parameters')}, "
                      f"{_relation(model, first, 'macs', 'MACs')}")
    return 0


def _ratio(value: int, reference: int) -> str:
    return f"{value / reference:.3f}x" if reference else "-"


def _relation(model: Model, first: Model, key: str, what: str) -> str:
    """'3.14x fewer parameters', '2.00x as many MACs', 'the same parameters'."""
    value, reference = model.totals[key], first.totals[key]
    if value == reference:
        return f"the same {what}"
    if not value or not reference:
        return f"{value:,} {what} against {reference:,}"
    if value < reference:
        return f"{reference / value:.2f}x fewer {what}"
    return f"{value / reference:.2f}x as many {what}"


def totals_by_op(model: Model) -> list[tuple[str, int, int, int]]:
    """(layer type, layers, params, MACs) for every type with parameters or MACs, most params first."""
    graph = model.graph
    found: dict[str, list[int]] = {}
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        if data.get("params", 0) or data.get("macs", 0):
            entry = found.setdefault(data["op"], [0, 0, 0])
            entry[0] += 1
            entry[1] += data.get("params", 0)
            entry[2] += data.get("macs", 0)
    return sorted(((op, *values) for op, values in found.items()), key=lambda row: -row[2])


def print_by_op(model: Model, console: Console) -> None:
    totals = model.totals
    table = Table(title="By layer type", title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("Op")
    for column in ("Layers", "Params", "Share", "MACs", "Share"):
        table.add_column(column, justify="right", no_wrap=True)
    for op, layers, params, macs in totals_by_op(model):
        table.add_row(op, str(layers), f"{params:,}", _share(params, totals["params"]),
                      f"{macs:,}", _share(macs, totals["macs"]))
    console.print()
    console.print(table)
    console.print(f"total params {totals['params']:,} ({human(totals['params'])}), "
                  f"MACs {totals['macs']:,} ({human(totals['macs'])})")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
