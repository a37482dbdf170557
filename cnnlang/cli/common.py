"""What several subcommands share: the MODEL argument, ``--input`` and error printing."""

from __future__ import annotations

import argparse
import re
import sys

from ..errors import CnnError, printable, render
from ..model import Model, load


def emit_error(error: CnnError) -> None:
    for each in [error, *error.others]:
        print(render(each), file=sys.stderr)


def emit_usage_error(message: str) -> None:
    """The one form of a usage error (exit status 2): ``cnnlang: error: ...`` on one line."""
    print(f"cnnlang: error: {printable(message)}", file=sys.stderr)


def input_size(text: str) -> tuple[int, ...]:
    if not re.fullmatch(r"\d+(x\d+){0,2}", text) or any(int(p) == 0 for p in text.split("x")):
        raise argparse.ArgumentTypeError(f"expected a size such as 3x224x224 (C x H x W), got '{text}'")
    return tuple(int(p) for p in text.split("x"))


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a .cnn file, or the name of a zoo model (see 'cnnlang zoo')")
    parser.add_argument("--input", type=input_size, metavar="CxHxW", help="use this input size instead of the declared one")


def load_model(args: argparse.Namespace, keep_going: bool = False) -> Model:
    return load(args.model, input_shape=args.input, keep_going=keep_going)


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
