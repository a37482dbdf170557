"""``cnnlang check FILE...``: parse and verify each file; silent when all are fine."""

from __future__ import annotations

import argparse

from ..errors import CnnError, UsageError
from ..model import check
from .common import emit_error, emit_usage_error


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "check", help="check .cnn files for errors",
        description="Parse and verify each file (a model, or a file of blocks); print nothing when all are fine."
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    return parser


def run(args: argparse.Namespace) -> int:
    status = 0
    for file in args.files:
        try:
            for warning in check(file):
                emit_error(warning)
        except CnnError as error:
            emit_error(error)
            status = max(status, 1)
        except UsageError as error:
            emit_usage_error(str(error))
            status = 2
    return status
