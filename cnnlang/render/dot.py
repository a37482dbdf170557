"""DOT text of a view: colours by kind of operation, labelled clusters, a legend.

The text is deterministic (nodes, clusters and edges in the IR's creation order, no paths or
dates), so a DOT file can serve as a golden test.
"""

from __future__ import annotations

import textwrap
from typing import Iterable

from ..layers import format_shape
from ..report import human
from .view import Path_, View, VNode, scope_title

FONT = "Helvetica"

# kind → (legend text, fill colour), in legend order.
KINDS: dict[str, tuple[str, str]] = {
    "io": ("input / output", "#d5d8dc"),
    "conv": ("convolution", "#aed6f1"),
    "pool": ("pooling", "#a9dfbf"),
    "fc": ("fully connected", "#d7bde2"),
    "norm": ("normalisation", "#f9e79f"),
    "activation": ("activation", "#f5cba7"),
    "merge": ("merge (add, concat)", "#a3e4d7"),
    "other": ("reshape, dropout, other", "#eaeded"),
    "block": ("folded block", "#fdfefe"),
    "error": ("shape error", "#fadbd8"),
    "unknown": ("not computed (after an error)", "#ffffff"),
}

_OP_KINDS = {
    "input": "io", "output": "io",
    "conv": "conv", "conv1d": "conv",
    "maxpool": "pool", "avgpool": "pool", "globalavgpool": "pool",
    "fc": "fc",
    "batchnorm": "norm", "lrn": "norm",
    "relu": "activation", "tanh": "activation", "sigmoid": "activation", "softmax": "activation",
    "add": "merge", "concat": "merge",
    "flatten": "other", "dropout": "other",
}
_CATEGORY_KINDS = {"reduction": "pool", "merge": "merge", "elementwise": "activation"}

ERROR_LINE = "#922b21"
HIGHLIGHT = "#7d3c98"
BYPASS = "#5d6d7e"
MUTED = "#7b7d7d"


FUSED = "#1a5276"
_SHORT_OPS = {"batchnorm": "bn"}


def fused_ops(data: dict) -> list[str]:
    """The ops an optimised node absorbed (``["bn", "relu"]``), for its label."""
    return [_SHORT_OPS.get(f["op"], f["op"]) for f in data.get("fused", [])]


def storage_note(data: dict) -> str:
    """Where an optimised node's output goes, after its shape: ``  → concat1[64:128]``."""
    if "write_into" in data:
        concat, offset = data["write_into"]
        return f"  → {concat.rsplit('/', 1)[-1]}[{offset}:{offset + data['shape'][0]}]"
    if data.get("eliminated"):
        return "  (inputs write in place)"
    if data.get("in_place"):
        return "  (in place)"
    if "streamed_into" in data:
        return f"  (computed inside {data['streamed_into'].rsplit('/', 1)[-1]})"
    return ""


def op_kind(op: str, layer=None) -> str:
    """The colour group of an operation; a new layer type falls back on its fusion category."""
    if op in _OP_KINDS:
        return _OP_KINDS[op]
    category = getattr(layer, "category", "opaque")
    if category == "anchor":
        return "conv" if "conv" in op else "fc"
    return _CATEGORY_KINDS.get(category, "other")


def node_kind(view: View, vnode: VNode) -> str:
    if vnode.errors:
        return "error"
    if vnode.unknown:
        return "unknown"
    if vnode.kind == "folded":
        return "block"
    if vnode.kind == "output":
        return "io"
    return op_kind(vnode.op, view.graph.nodes[vnode.id]["layer"])


def to_dot(view: View, *, rankdir: str = "TB", highlight: Iterable[str] = (), legend: bool = True) -> str:
    """DOT text for ``view``. ``highlight`` holds drawn node ids and cluster paths ("a/b")."""
    graph = view.graph
    marked = set(highlight)
    out = [f"digraph {_quote(graph.graph['name'])} {{"]
    attrs = {
        "rankdir": rankdir, "newrank": "true", "ordering": "out",
        "nodesep": "0.25", "ranksep": "0.15" if rankdir == "TB" else "0.25", "fontname": FONT, "fontsize": "11",
        "labelloc": "t", "labeljust": "l", "label": _title(view, legend),
    }
    out.append("  graph [" + _attrs(attrs) + "];")
    node = {"shape": "box", "style": "rounded,filled", "fontname": FONT, "fontsize": "10", "margin": "0.1,0.04",
            "height": "0.3", "penwidth": "1", "color": "#566573"}
    out.append("  node [" + _attrs(node) + "];")
    out.append("  edge [" + _attrs({"fontname": FONT, "fontsize": "8", "fontcolor": "#424949", "color": "#566573",
                                      "arrowsize": "0.6"}) + "];")
    children: dict[Path_, list[Path_]] = {}
    for path in view.clusters:
        children.setdefault(path[:-1], []).append(path)
    members: dict[Path_, list[VNode]] = {}
    for vnode in sorted(view.nodes.values(), key=lambda v: v.order):
        members.setdefault(vnode.cluster, []).append(vnode)
    ranks: dict[Path_, list[list[str]]] = {}
    for cluster, starts in view.rank_groups:
        ranks.setdefault(cluster, []).append(starts)
    numbering = {path: index for index, path in enumerate(view.clusters)}

    def emit(path: Path_, indent: str) -> None:
        items = [(v.order, "node", v) for v in members.get(path, [])]
        items += [(min(v.order for v in _within(view, c)), "cluster", c) for c in children.get(path, [])]
        for _, what, item in sorted(items, key=lambda t: t[0]):
            if what == "node":
                out.append(indent + _node(view, item, item.id in marked))
            else:
                style = {"label": _html(_escape(scope_title(graph, item))), "style": "rounded,filled",
                         "fillcolor": "#f8f9f9" if len(item) % 2 else "#eef3f7", "color": "#aab7b8",
                         "fontsize": "10", "fontcolor": "#1b2631", "labeljust": "l", "margin": "6"}
                if "/".join(item) in marked:
                    style.update(color=HIGHLIGHT, penwidth="3")
                out.append(f"{indent}subgraph {_quote(f'cluster_{numbering[item]}')} {{")
                out.append(f"{indent}  graph [{_attrs(style)}];")
                emit(item, indent + "  ")
                out.append(indent + "}")
        for starts in ranks.get(path, []):
            # Invisible edges within the rank keep the branches in source order: left to right
            # (TB), top to bottom (LR, where dot's rotation reverses the order).
            chain = " -> ".join(_quote(s) for s in (starts if rankdir == "TB" else starts[::-1]))
            out.append(f"{indent}{{ rank=same; {chain} [style=\"invis\"]; }}")

    emit((), "  ")
    for edge in sorted(view.edges, key=lambda e: e.order):
        # Real edge labels (not xlabels): dot reserves room for them, so they never sit on a line.
        style = {"label": format_shape(edge.shape)}
        if edge.bypass:
            style.update(style="dashed", color=BYPASS, penwidth="1.2", weight="0")
        else:
            style.update(weight="4")
        out.append(f"  {_quote(edge.source)} -> {_quote(edge.target)} [{_attrs(style)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _within(view: View, path: Path_) -> list[VNode]:
    return [v for v in view.nodes.values() if v.cluster[: len(path)] == path]


def _title(view: View, legend: bool) -> str:
    """The graph label: the model's name and sizes, then the legend of the kinds drawn."""
    graph = view.graph
    source = graph.nodes[graph.graph["input"]].get("shape")
    outputs = graph.graph.get("outputs", [])
    target = graph.nodes[outputs[0]].get("shape") if outputs else None
    totals = graph.graph.get("totals", {})
    facts = [f"{format_shape(source)} → {format_shape(target)}", f"{human(totals.get('params', 0))} params",
             f"{human(totals.get('macs', 0))} MACs"]
    if view.depth is not None:
        facts.append(f"blocks folded at depth {view.depth}")
    rows = [f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="14"><B>{_escape(graph.graph["name"])}</B></FONT>   '
            f'{_escape("   ·   ".join(facts))}</TD></TR>']
    if legend:
        rows.append(f'<TR><TD ALIGN="LEFT">{_legend(view)}</TD></TR>')
    return _html('<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="2">' + "".join(rows) + "</TABLE>")


def _node(view: View, vnode: VNode, marked: bool) -> str:
    kind = node_kind(view, vnode)
    fill = KINDS[kind][1]
    attrs = {"fillcolor": fill}
    lines: list[str] = []
    if vnode.kind == "output":
        attrs.update(shape="oval", style="filled")
        outputs = view.graph.graph["outputs"]
        head = "<B>output</B>"
        if len(outputs) > 1:  # say which tensor each one is
            head += "  " + _escape(outputs[int(vnode.id[len("@output"):] or 1) - 1])
        lines = [head, _small(format_shape(vnode.shape))]
    elif vnode.kind == "folded":
        # Two lines: which block call(s), then in -> out shapes and parameters.
        attrs.update(shape="box3d", style="filled", penwidth="1.4", margin="0.14,0.08")
        names = [p[-1] for p in vnode.paths]
        signature = view.graph.graph["scopes"][vnode.paths[0]].signature
        if len(names) == 1 and scope_title(view.graph, vnode.paths[0]) != signature:
            head = f"<B>{_escape(names[0])}</B>  {_escape(signature)}"  # a name the user chose
        elif len(names) > 1:
            head = f"<B>{_escape(vnode.signature)}</B>  " + _small(f"{names[0]} … {names[-1]}", MUTED)
        else:
            head = f"<B>{_escape(vnode.signature)}</B>"
        params = f"{human(vnode.params)} params" if vnode.params else "no params"
        lines = [head, _small(f"{format_shape(vnode.in_shape)} → {format_shape(vnode.shape)}   ·   {params}")]
    else:
        data = view.graph.nodes[vnode.id]
        layer = data["layer"]
        name = vnode.id.rsplit("/", 1)[-1]
        if layer is None:
            attrs.update(shape="oval", style="filled")
            lines = ["<B>input</B>", _small(format_shape(vnode.shape))]
        else:
            # Two lines: the name and, unless the name says it all (relu1), what the layer does;
            # then its output shape.
            label = layer.label()
            head = f"<B>{_escape(name)}</B>"
            fused = fused_ops(data)
            if fused or not (label == vnode.op and name.startswith(vnode.op)):
                head += f"  {_escape(' + '.join([label, *fused]))}"
            lines = [head, _small(format_shape(vnode.shape) + storage_note(data))]
            if fused:
                attrs.update(style="rounded,filled,bold", penwidth="2.2", color=FUSED)
            if data.get("eliminated"):
                attrs.update(style="rounded,filled,dashed", color=FUSED)
    if vnode.unknown:
        attrs.update(style=attrs.get("style", "rounded,filled") + ",dashed", fontcolor=MUTED, color="#aab7b8")
    if vnode.errors and vnode.kind == "layer":
        lines = lines[:1]  # its shape would be "?": the diagnostic follows instead
    for error in vnode.errors:
        attrs.update(color="#c0392b", penwidth="2.5")
        for line in textwrap.wrap(f"error: {error.message}", 46):
            lines.append(f'<FONT COLOR="{ERROR_LINE}">{_escape(line)}</FONT>')
        if error.span is not None:
            lines.append(_small(f"line {error.span.line}", ERROR_LINE))
    if marked:
        attrs.update(color=HIGHLIGHT, penwidth="4")
    attrs["label"] = _html("<BR/>".join(lines))
    return f"{_quote(vnode.id)} [{_attrs(attrs)}];"


def _legend(view: View, per_row: int = 6) -> str:
    used = {node_kind(view, v) for v in view.nodes.values()}
    cells = [f'<TD BGCOLOR="{fill}" BORDER="1" COLOR="#566573">{_escape(text)}</TD>'
             for kind, (text, fill) in KINDS.items() if kind in used]
    if any(view.graph.nodes[v.id].get("fused") for v in view.nodes.values() if v.kind == "layer"):
        cells.append(f'<TD BORDER="1" COLOR="{FUSED}">fused layers (bold)</TD>')
    if any(e.bypass for e in view.edges):
        cells.append('<TD BORDER="1" COLOR="#566573" STYLE="DASHED">residual shortcut</TD>')
    rows = ["<TR>" + "".join(cells[i:i + per_row]) + "</TR>" for i in range(0, len(cells), per_row)]
    rows.append(f'<TR><TD COLSPAN="{per_row}" ALIGN="LEFT">'
                + _small("edge labels: tensor shapes (C x H x W)", MUTED) + "</TD></TR>")
    return '<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="2">' + "".join(rows) + "</TABLE>"


def _small(text: str, colour: str = "#1c2833") -> str:
    return f'<FONT POINT-SIZE="9" COLOR="{colour}">{_escape(text)}</FONT>'


class _Html(str):
    """An HTML-like label: written between < > instead of quotes."""


def _html(text: str) -> _Html:
    return _Html(text)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}=<{v}>" if isinstance(v, _Html) else f"{k}={_quote(v)}" for k, v in attrs.items())
