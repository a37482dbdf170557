"""The ``cnnlang`` command: one module per subcommand, each with ``add_parser`` and ``run``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..environment import tune_threads
from ..errors import CnnError, UsageError
from ..files import file_system_problem
from .common import emit_error, emit_usage_error

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
    tune_threads()  # before anything loads NumPy or Numba's OpenMP pool (cnnlang/environment.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for `train --ranks`, which reruns it under mpiexec
    try:
        return args.run(args)
    except CnnError as error:
        emit_error(error)
        return EXIT_MODEL_ERROR
    except (UsageError, FileExistsError) as error:
        # The one path for usage errors: every subcommand raises UsageError (or a subclass).
        emit_usage_error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except OSError as error:
        # The file system said no (disk full, read-only, permission): say what and where.
        emit_usage_error(file_system_problem(error))
        return EXIT_USAGE
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
