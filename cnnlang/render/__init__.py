"""Diagrams of compiled models through Graphviz.

>>> from cnnlang import load
>>> from cnnlang.render import to_dot, render
>>> text = to_dot(load("lenet5"))                           # DOT text; needs no Graphviz
>>> render(load("resnet50"), "resnet50.svg", depth=1)        # needs Graphviz's `dot`

``depth`` folds blocks as ``cnnlang render --depth`` does (see :mod:`cnnlang.render.view`).
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path
from typing import Iterable, TYPE_CHECKING

import graphviz

from .. import ir
from ..errors import UsageError
from ..files import write_bytes_atomically
from . import dot as _dot
from .view import View, build

if TYPE_CHECKING:  # type hints only, so that this module stays below cnnlang.model
    from ..model import Model

FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
RANKDIRS = ("TB", "LR")

INSTALL_HINT = (
    "install Graphviz: 'apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' (macOS) "
    "or 'conda install -c conda-forge graphviz'"
)


class RenderError(UsageError):
    """A usage problem (unknown format, existing file, unknown layer name, no Graphviz)."""


class GraphvizNotFound(RenderError):
    def __init__(self, fmt: str):
        super().__init__(
            f"Graphviz's 'dot' program is not on PATH, and .{fmt} output needs it "
            f"(.dot output does not); {INSTALL_HINT}"
        )


class GraphvizFailed(Exception):
    """``dot`` ran but failed: a bug in the DOT we wrote, or a broken Graphviz."""


def format_for(path: str | Path) -> str:
    """The output format named by a file's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(s for s in FORMATS if s != ".gv")
        what = f"suffix '{suffix}'" if suffix else "no suffix"
        raise RenderError(f"cannot tell the format of '{path}' ({what}); use one of {known}")
    return FORMATS[suffix]


def dot_executable() -> str | None:
    return shutil.which("dot")


def resolve_highlights(v: View, names: Iterable[str]) -> list[str]:
    """Drawn node ids / cluster paths for layer or block names; RenderError for unknown ones.

    A name is a layer's id (``c1``, ``basic3/conv1``) or a block instance's path (``basic3``);
    a layer or block folded away highlights the node it is drawn in.
    """
    graph = v.graph
    scopes = {"/".join(p): p for p in graph.graph["scopes"]}
    out = []
    aliases = graph.graph.get("aliases", {})
    for name in names:
        name = aliases.get(name, name)  # a layer fused away is drawn in the node that absorbed it
        if name in graph:
            out.append(v.owner[name])
            continue
        if name in scopes:
            path = scopes[name]
            if path in v.clusters:
                out.append(name)
                continue
            inside = [n for n in ir.ordered(graph) if graph.nodes[n]["path"][: len(path)] == path]
            if inside:
                out.append(v.owner[inside[0]])
                continue
        # A unique local name (`conv1` inside one block only) is accepted too.
        local = [n for n in graph.nodes if n.rsplit("/", 1)[-1] == name]
        if len(local) == 1:
            out.append(v.owner[local[0]])
            continue
        if len(local) > 1:
            listed = ", ".join(local[:5]) + (", ..." if len(local) > 5 else "")
            raise RenderError(f"'{name}' names several layers ({listed}); give the full name")
        close = _close_names(graph, name, scopes)
        hint = f"; close names: {', '.join(close)}" if close else "; 'cnnlang summary MODEL' lists the layer names"
        raise RenderError(f"no layer or block named '{name}' in {graph.graph['name']}{hint}")
    return out


def _close_names(graph, name: str, scopes) -> list[str]:
    """Full names like ``name``: by the whole name, then by the last part (``conv7`` → ``b1/conv1``)."""
    full = list(graph.nodes) + list(scopes)
    out = difflib.get_close_matches(name, full, n=5, cutoff=0.6)
    by_local: dict[str, list[str]] = {}
    for each in full:
        by_local.setdefault(each.rsplit("/", 1)[-1], []).append(each)
    for local in difflib.get_close_matches(name.rsplit("/", 1)[-1], list(by_local), n=3, cutoff=0.6):
        out += by_local[local][:2]
    return list(dict.fromkeys(out))[:6]


def to_dot(
    model: Model,
    *,
    depth: int | None = None,
    rankdir: str = "TB",
    highlight: Iterable[str] = (),
    legend: bool = True,
) -> str:
    """The DOT text of the model's diagram (works for models with shape errors, too)."""
    if rankdir not in RANKDIRS:
        raise RenderError(f"rankdir must be one of {', '.join(RANKDIRS)}, not '{rankdir}'")
    v = build(model.graph, depth)
    return _dot.to_dot(v, rankdir=rankdir, highlight=resolve_highlights(v, highlight), legend=legend)


def run_dot(dot_text: str, fmt: str) -> bytes:
    """Lay out DOT text with Graphviz's ``dot`` into ``fmt`` (svg, png, pdf...).

    The ``graphviz`` package runs the program; we write the DOT text ourselves so that it is
    deterministic and can be compared with golden files.
    """
    try:
        return graphviz.Source(dot_text).pipe(format=fmt, engine="dot")
    except graphviz.ExecutableNotFound as error:
        raise GraphvizNotFound(fmt) from error
    except graphviz.CalledProcessError as error:
        message = (error.stderr or b"").decode("utf-8", "replace").strip() or f"exit status {error.returncode}"
        raise GraphvizFailed(f"dot -T{fmt} failed: {message}") from error


def render(
    model: Model,
    path: str | Path,
    *,
    fmt: str | None = None,
    force: bool = False,
    **options,
) -> Path:
    """Write the diagram to ``path`` (format from its suffix unless ``fmt``); returns the path.

    Refuses to overwrite an existing file unless ``force``. Options as for :func:`to_dot`.
    """
    path = Path(path)
    fmt = fmt or format_for(path)
    if path.exists() and not force:
        raise RenderError(f"'{path}' exists; pass --force (force=True) to overwrite it")
    if fmt != "dot" and dot_executable() is None:
        raise GraphvizNotFound(fmt)
    text = to_dot(model, **options)
    data = text.encode("utf-8") if fmt == "dot" else run_dot(text, fmt)
    write_bytes_atomically(path, data)
    return path


def to_svg(model: Model, **options) -> str | None:
    """SVG text of the diagram, or None when Graphviz's ``dot`` is not installed."""
    if dot_executable() is None:
        return None
    return run_dot(to_dot(model, **options), "svg").decode("utf-8")


__all__ = [
    "FORMATS", "GraphvizFailed", "GraphvizNotFound", "RenderError", "format_for", "render", "resolve_highlights",
    "run_dot", "to_dot", "to_svg",
]
