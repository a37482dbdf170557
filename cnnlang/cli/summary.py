"""``cnnlang summary MODEL``: every layer's output shape, parameters and MACs, with totals."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from ..layers import format_shape
from ..report import human, outputs_text, peak_memory_line, rows, to_json
from .common import add_model_argument, emit_error, fitted_table, load_model, table_console
from .totals import add_totals_options, compare, print_by_op


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "summary", help="table of shapes, parameters and MACs",
        description="Show each layer's output shape, parameter count and multiply-accumulates (MACs), grouped by block.",
    )
    add_model_argument(parser)
    parser.add_argument("--depth", type=int, metavar="N", help="fold blocks nested deeper than N into one row (1: top-level blocks)")
    parser.add_argument("--explain", action="store_true", help="show the output-size arithmetic of each layer")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    add_totals_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 1:
        raise UsageError("--depth must be at least 1")
    if args.others:
        return compare(args)
    model = load_model(args)
    for warning in model.warnings:
        emit_error(warning)
    if args.json:
        print(json.dumps(to_json(model, args.depth), indent=2))
        return 0
    console = table_console()
    listed = rows(model, args.depth, args.explain)
    # Numbers and shapes are never cut; on a narrow terminal the name and op columns end in an
    # ellipsis (wrapping broke block calls mid-token), and then the RF column is left out.
    widest = max(len(f"{max(r.macs, r.params):,}") for r in listed)
    columns = [("Layer", "left", None), ("Op", "left", None), ("Output", "right", 0),
               ("Params", "right", min(widest, 11)), ("MACs", "right", widest), ("RF", "right", 0)]
    cells, explanations = [], []
    for row in listed:
        name = "  " * row.depth + row.name
        cells.append([
            f"[bold]{name}[/bold]" if row.is_block else name,
            row.op,
            format_shape(row.shape),
            f"{row.params:,}" if row.params else "",
            f"{row.macs:,}" if row.macs else "",
            "x".join(map(str, row.rf)) if row.rf else "",
        ])
        if row.explain and row.explain != "same shape as the input":
            explanations.append((row.node, row.explain))  # the block path: conv1 alone is ambiguous
    table = fitted_table(console, columns, cells, droppable=("RF",),
                         title=f"{model.name}  ({model.source})", title_justify="left")
    console.print(table)
    if explanations:
        width = max(len(name) for name, _ in explanations)
        console.print("\nOutput sizes: W2 = (W1 - F + 2P)/S + 1 per spatial axis (F the effective kernel)")
        for name, text in explanations:
            console.print(f"  {name:<{width}}  {text}")
    totals = model.totals
    frozen = totals["params"] - totals["trainable"]
    console.print(
        f"input {format_shape(model.input_shape)} -> {outputs_text(model)}\n"
        f"params: {totals['params']:,} ({human(totals['params'])}); trainable {totals['trainable']:,}, "
        f"frozen {frozen:,}; buffers (batchnorm running statistics) {totals['buffers']:,}\n"
        f"MACs per example: {totals['macs']:,} ({human(totals['macs'])}; conv + fully connected, bias adds excluded)\n"
        f"activations per example: {totals['activations']:,} values = {human(totals['activation_bytes'], 'B')} in float32\n"
        + peak_memory_line(model.optimise().graph.graph["memory"])
    )
    if args.by_op:
        print_by_op(model, console)
    return 0
