"""What several subcommands share: the MODEL argument, ``--input`` and error printing."""

from __future__ import annotations

import argparse
import os
import re
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import CnnError, printable, render
from ..model import Model, load


def emit_error(error: CnnError) -> None:
    for each in [error, *error.others]:
        print(render(each), file=sys.stderr)


def emit_usage_error(message: str) -> None:
    """The one form of a usage error (exit status 2): ``cnnlang: error: ...`` on one line."""
    print(f"cnnlang: error: {printable(message)}", file=sys.stderr)


def table_console(pipe_width: int = 160) -> Console:
    """A console for tables: the terminal's width; ``pipe_width`` columns for pipes and files
    (whole rows, not an 80-column cut), unless $COLUMNS says otherwise."""
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = pipe_width
    return console


def fitted_table(console: Console, columns: list[tuple[str, str, int | None]], rows: list[list[str]],
                 droppable: tuple[str, ...] = (), **options) -> Table:
    """A table that fits the console without wrapping a cell. ``columns`` are (title, justify,
    width): a column with a width (at least its widest cell) is never cut; one with None is
    flexible and ends in an ellipsis where it must. Columns in ``droppable`` are left out, last
    first, while the flexible ones would get fewer than ``MIN_FLEXIBLE`` characters each.
    (Rich's own fitting shrinks only columns that may wrap, and wrapping broke tokens.)"""
    def natural(i: int) -> int:
        return max([len(columns[i][0]), *(Text.from_markup(row[i]).cell_len for row in rows)])

    keep = list(range(len(columns)))
    fixed = {i: max(columns[i][2], natural(i)) for i in keep if columns[i][2] is not None}

    def room() -> int:  # what the flexible columns share
        return console.width - sum(fixed[i] for i in keep if i in fixed) - 3 * (len(keep) - 1)

    flexible = [i for i in keep if i not in fixed]
    for title in reversed(droppable):
        if room() >= MIN_FLEXIBLE * len(flexible):
            break
        keep.remove([c[0] for c in columns].index(title))
    widths = dict(fixed)
    left = max(room(), len(flexible))
    for position, i in enumerate(sorted(flexible, key=natural)):  # the narrow ones take what they need
        widths[i] = min(natural(i), left // (len(flexible) - position))
        left -= widths[i]
    table = Table(show_edge=False, pad_edge=False, **options)
    for i in keep:
        table.add_column(columns[i][0], justify=columns[i][1], no_wrap=True, overflow="ellipsis", width=widths[i])
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table


MIN_FLEXIBLE = 16


def input_size(text: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(x\d+){0,2}", text) or any(int(p) == 0 for p in text.split("x")):
        raise argparse.ArgumentTypeError(f"expected a size such as 3x224x224 (C x H x W), got '{text}'")
    return tuple(int(p) for p in text.split("x"))


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .cnn file, or the name of a zoo model (see 'cnnlang zoo')")
    parser.add_argument("--input", type=input_size, metavar="CxHxW", help="use this input size instead of the declared one")


def load_model(args: argparse.Namespace, keep_going: bool = False) -> Model:
    return load(args.model, input_shape=args.input, keep_going=keep_going)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default="cpu",
        help="where to run: cpu (default), cuda (an NVIDIA GPU, needs cnnlang[cuda]) or auto (the GPU when one is usable)",
    )


def device_backend(args: argparse.Namespace):
    """The runtime backend for ``--device``: checked before anything slow (data, compiling), so a
    GPU that cannot be used is one line at once (DeviceError, exit 2)."""
    from ..runtime.backend import device_backend as resolve

    return resolve(args.device)


def add_pass_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--passes LIST`` and ``--no-pass NAME`` (run, bench and render share them)."""
    parser.add_argument(
        "--passes", metavar="LIST", default=default,
        help=f"optimisation passes to apply: 'all', 'none', or a comma-separated list (default: {default}; "
        "'cnnlang passes MODEL' shows what each does)",
    )
    parser.add_argument("--no-pass", action="append", default=[], metavar="PASS", help="leave this pass out (repeatable)")


def selected_passes(args: argparse.Namespace) -> list[str]:
    """The pass names chosen by ``--passes``/``--no-pass``, in pipeline order."""
    from ..errors import UsageError
    from ..passes.optimise import pass_names

    try:
        chosen = pass_names(args.passes)
        left_out = set(pass_names(args.no_pass))
    except ValueError as error:
        raise UsageError(str(error)) from None
    return [name for name in chosen if name not in left_out]
