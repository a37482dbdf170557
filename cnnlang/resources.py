"""Where the grammar and the zoo live, installed or in a source checkout.

A wheel places ``grammars/`` and ``zoo/`` inside the package (``cnnlang/grammars``); a source
checkout or an editable install keeps them beside ``cnnlang/`` at the repository root.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cnnlang is installed without its {name}/ folder (looked in {_PACKAGE})")


def grammar_file() -> Path:
    return _data_dir("grammars") / "cnn.lark"


def zoo_dir() -> Path:
    return _data_dir("zoo")
