"""``cnnlang zoo``: the bundled models with their sizes."""

from __future__ import annotations

import argparse


from ..model import load, resolve, zoo_names
from ..layers import format_shape
from ..report import human
from .common import fitted_table, table_console


def add_parser(commands) -> argparse.ArgumentParser:
    return commands.add_parser("zoo", help="list the bundled models", description="List the zoo's models with their parameter and MAC counts.")


def _citation(path) -> str:
    """The paper a zoo file cites: its first comment line, continued while the title's quotes are
    open (a title may wrap), up to the description that may follow a colon."""
    text = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        text = f"{text} {line.lstrip('# ').strip()}".strip()
        if text.count('"') % 2 == 0:
            break
    head, quote, tail = text.rpartition('"')
    return head + quote + tail.split(": ", 1)[0]


def run(args: argparse.Namespace) -> int:
    console = table_console(pipe_width=240)  # piped, whole citations
    rows = []
    for name in zoo_names():
        model = load(name)
        rows.append([name, format_shape(model.input_shape), f"{model.totals['params']:,}", human(model.totals["macs"]),
                     _citation(resolve(name))])
    # In a terminal, one line per model, the citation ending in an ellipsis where it does not fit.
    columns = [("Model", "left", 0), ("Input", "right", 0), ("Params", "right", 0), ("MACs", "right", 0),
               ("Source", "left", None)]
    table = fitted_table(console, columns, rows)
    console.print(table)
    return 0
