"""The ``cnnlang`` command: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import CnnError, UsageError
from ..model import ModelNotFound
from .common import emit_error

SUBCOMMANDS = ("check", "summary", "render", "passes", "zoo", "run", "bench", "train", "eval", "plot",
               "export", "import", "weights")
# Commands whose name is a Python keyword live in a module of another name.
_MODULES = {"import": "import_onnx"}

EXIT_MODEL_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnlang",
        description="Write, check, summarise and draw convolutional networks in the .cnn language.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{_MODULES.get(name, name)}")
        sub = module.add_parser(commands)
        sub.set_defaults(run=module.run)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CnnError as error:
        emit_error(error)
        return EXIT_MODEL_ERROR
    except (ModelNotFound, UsageError, FileExistsError) as error:
        print(f"cnnlang: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as error:  # noqa: BLE001 - the user gets a sentence, never a traceback
        if os.environ.get("CNNLANG_DEBUG"):
            raise
        print(
            f"cnnlang: internal error: {type(error).__name__}: {error}\n"
            "This is a bug in cnnlang; run again with CNNLANG_DEBUG=1 for the details.",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
