"""Naming scopes of lowering: the network body, a block instance or a labelled repetition, each
with its labels, block parameters and automatic layer names (``conv1``, ``conv2``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, MutableMapping

from . import syntax as s
from .errors import CnnError, Span
from .loader import BoundBlock


@dataclass
class NameScope:
    """A naming scope: the network body, a block instance or a labelled repetition."""

    path: tuple[str, ...]
    env: dict[str, Any]  # block parameters
    names: MutableMapping[str, str]  # labels usable in `from` → node id
    blocks: dict[str, BoundBlock]
    call_stack: tuple[Span, ...]
    reserved: set[str]  # labels written in this scope, kept free of automatic names
    taken: set[str] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)

    def local_name(self, base: str, label: str | None, span: Span) -> str:
        if label is not None:
            if label in self.taken:
                raise CnnError(f"the name '{label}' is used twice in this scope", span)
            self.taken.add(label)
            return label
        number = self.counters.get(base, 0)
        while True:
            number += 1
            candidate = f"{base}{number}"
            if candidate not in self.taken and candidate not in self.reserved:
                break
        self.counters[base] = number
        self.taken.add(candidate)
        return candidate

    def node_id(self, local: str) -> str:
        return "/".join(self.path + (local,))


def items(stmts: list[s.Stmt], into_groups: bool = True) -> Iterator[s.Item]:
    """Every item written in a statement list, nested branches, bodies and shortcuts included.

    With ``into_groups`` false, the inside of a labelled repetition (a naming scope of its own)
    is skipped, though the repetition itself is yielded.
    """
    for stmt in stmts:
        for item in stmt.items if isinstance(stmt, s.Chain) else []:
            yield item
            if isinstance(item, s.Concat):
                for branch in item.branches:
                    yield from items(branch, into_groups)
            elif isinstance(item, s.Residual):
                yield from items(item.body, into_groups)
                if isinstance(item.shortcut, list):
                    yield from items(item.shortcut, into_groups)
            elif isinstance(item, s.Repeat) and (into_groups or item.label is None):
                yield from items(item.body, into_groups)


def labels(stmts: list[s.Stmt]) -> Iterator[str]:
    """Labels written in one naming scope."""
    return (item.label for item in items(stmts, into_groups=False) if item.label is not None)
