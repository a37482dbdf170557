"""``cnnlang render MODEL -o FILE``: draw the model with Graphviz (.svg, .png, .pdf or .dot).

A model with shape errors is drawn up to the error, the failing layer marked in red; the
diagnostics go to stderr and the exit status is 1, after the file is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import ir
from ..render import (
    FORMATS, RANKDIRS, GraphvizNotFound, RenderError, dot_executable, format_for, run_dot, to_dot,
)
from ..errors import UsageError
from ..files import write_bytes_atomically
from ..model import Model
from ..passes.optimise import optimise
from .common import add_model_argument, add_pass_options, emit_error, load_model, selected_passes

EXIT_MODEL_ERROR = 1


def add_parser(commands) -> argparse.ArgumentParser:
    suffixes = ", ".join(s for s in FORMATS if s != ".gv")
    parser = commands.add_parser(
        "render", help="draw the model (SVG, PNG, PDF or DOT) with Graphviz",
        description=(
            "Draw the model's layers, shapes and blocks with Graphviz. The output format follows "
            f"the file's suffix ({suffixes}); .dot needs no Graphviz, the others need its 'dot' program. "
            "A model with shape errors is drawn up to the error, then the command exits with status 1."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help=f"the file to write ({suffixes})")
    parser.add_argument("--depth", type=int, metavar="N",
                        help="fold blocks nested N deep or deeper into one node each (1: top-level blocks); "
                             "runs of identical blocks fold into one node 'block(...) × n'")
    parser.add_argument("--rankdir", choices=RANKDIRS, default="TB", type=str.upper,
                        help="layout direction: TB top to bottom (default), LR left to right")
    parser.add_argument("--highlight", action="append", default=[], metavar="LAYER",
                        help="mark this layer or block (as 'cnnlang summary' names it); may be repeated")
    parser.add_argument("--no-legend", dest="legend", action="store_false", help="leave out the colour legend")
    parser.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    add_pass_options(parser, default="none")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.depth is not None and args.depth < 1:
        raise UsageError("--depth must be at least 1")
    output = Path(args.output)
    fmt = format_for(output)
    # Usage problems first, before the model is compiled.
    if output.exists() and not args.force:
        raise RenderError(f"'{output}' exists; use --force to overwrite it")
    if output.is_dir():
        raise RenderError(f"'{output}' is a directory")
    if not output.parent.is_dir():
        raise RenderError(f"cannot write '{output}': no directory '{output.parent}'")
    if fmt != "dot" and dot_executable() is None:
        raise GraphvizNotFound(fmt)
    passes = selected_passes(args)
    model = load_model(args, keep_going=True)  # errors outside shape inference still raise
    if passes and ir.first_error(model.graph) is None:  # a broken model is drawn as written
        model = Model(optimise(model.graph, passes), model.source)
    text = to_dot(model, depth=args.depth, rankdir=args.rankdir, highlight=args.highlight, legend=args.legend)
    data = text.encode("utf-8") if fmt == "dot" else run_dot(text, fmt)
    write_bytes_atomically(output, data)
    error = ir.first_error(model.graph)
    if error is not None:
        emit_error(error)
        print(f"cnnlang: wrote '{output}', drawn up to the error", file=sys.stderr)
        return EXIT_MODEL_ERROR
    return 0
