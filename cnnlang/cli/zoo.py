"""``cnnlang zoo``: the bundled models with their sizes."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from ..model import load, resolve, zoo_names
from ..layers import format_shape
from ..report import human


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
    table = Table(show_edge=False, pad_edge=False)
    for column, justify in (("Model", "left"), ("Input", "right"), ("Params", "right"), ("MACs", "right"), ("Source", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "Source")
    for name in zoo_names():
        model = load(name)
        table.add_row(name, format_shape(model.input_shape), f"{model.totals['params']:,}", human(model.totals["macs"]),
                      _citation(resolve(name)))
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = 160
    console.print(table)
    return 0
