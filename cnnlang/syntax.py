"""The abstract syntax of a .cnn file: plain dataclasses, each carrying its source span."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from .errors import Span


# ---- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A number, size (``3x3`` → a tuple), string or boolean written in the source."""

    value: object
    span: Span


@dataclass(frozen=True)
class NameRef:
    name: str
    span: Span


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * / // %
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class TupleExpr:
    items: tuple["Expr", ...]
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span


Expr = Union[Literal, NameRef, BinOp, Neg, TupleExpr, ListExpr]


# ---- statements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Argument:
    keyword: str | None
    value: Expr
    span: Span


@dataclass
class Call:
    """``name(args)``, a layer or a block; ``* n`` repeats it."""

    name: str
    args: list[Argument]
    repeat: Expr | None
    span: Span
    label: str | None = None


@dataclass
class Concat:
    """``concat { branch {...} branch {...} }``: branches from one input, joined along channels."""

    branches: list[list["Stmt"]]
    span: Span
    label: str | None = None


@dataclass
class Residual:
    """``residual { body } shortcut ...``: the body's output is added to the shortcut's."""

    body: list["Stmt"]
    shortcut: str | list["Stmt"] | None  # None → identity; "auto"/"identity"; or a chain
    span: Span
    shortcut_span: Span | None = None
    label: str | None = None


@dataclass
class Repeat:
    count: Expr
    body: list["Stmt"]
    span: Span
    label: str | None = None


Item = Union[Call, Concat, Residual, Repeat]


@dataclass
class Chain:
    """``[from a, b ->] item -> item ...``: items applied in order to the current tensor."""

    sources: list[tuple[str, Span]] | None
    items: list[Item]
    span: Span


@dataclass
class InputStmt:
    shape: Expr
    span: Span


@dataclass
class OutputStmt:
    names: list[tuple[str, Span]]
    span: Span


Stmt = Union[Chain, InputStmt, OutputStmt]


# ---- top level ---------------------------------------------------------------------------


@dataclass
class Param:
    name: str
    default: Expr | None
    span: Span


@dataclass
class BlockDef:
    name: str
    params: list[Param]
    body: list[Stmt]
    span: Span


@dataclass
class NetworkDef:
    name: str
    body: list[Stmt]
    span: Span


@dataclass
class Import:
    path: str
    names: list[tuple[str, Span]] | None  # None imports every block
    span: Span


@dataclass
class Module:
    file: str
    imports: list[Import] = field(default_factory=list)
    blocks: dict[str, BlockDef] = field(default_factory=dict)
    network: NetworkDef | None = None
