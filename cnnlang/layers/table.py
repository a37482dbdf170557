"""The layer table of docs/language.md, generated from the layer registry so the page cannot
drift from the code. ``python -m cnnlang.layers.table docs/language.md`` rewrites it in place;
tests/layers/test_layer_table.py fails when the page is stale."""

from __future__ import annotations

import sys
from pathlib import Path

from . import LAYER_TYPES

BEGIN = "<!-- layer table: generated from cnnlang/layers by `python -m cnnlang.layers.table docs/language.md` -->"
END = "<!-- end of the generated layer table -->"


def markdown_table() -> str:
    """One row per layer type: name and aliases, every argument, those taken by position, what it
    does."""
    rows = [
        "| layer | arguments (defaults) | by position | what it does |",
        "|---|---|---|---|",
    ]
    for cls in LAYER_TYPES:
        name = f"`{cls.op}`" + (f" ({', '.join(f'`{a}`' for a in cls.aliases)})" if cls.aliases else "")
        arguments = f"`{cls.signature()}`" if cls.signature() else ""
        positional = f"`{', '.join(cls.positional_names())}`" if cls.positional_names() else ""
        text = cls.summary + (f"; {cls.notes}" if cls.notes else "")
        rows.append(f"| {name} | {arguments} | {positional} | {text} |")
    return "\n".join(rows)


def with_table(page: str) -> str:
    """``page`` with the text between the BEGIN and END markers replaced by the current table."""
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    return page[:start] + "\n" + markdown_table() + "\n" + page[end:]


def main(argv: list[str]) -> int:
    for name in argv:
        path = Path(name)
        path.write_text(with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
