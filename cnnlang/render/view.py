"""What a diagram shows, before any DOT is written: visible nodes, clusters and edges.

A *view* of a compiled model at a folding depth. Without a depth every layer is a node and every
block instance a cluster. With ``depth=N`` a layer whose ``path`` has length >= N is drawn inside
one folded node for ``path[:N]`` (so depth 1 shows the top-level layers and one node per
top-level block instance), and consecutive folded instances of one block call (same signature,
each feeding only the next) merge into a single run node, e.g. ``basic(128) × 2``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
import networkx as nx

from .. import ir
from ..errors import CnnError

Path_ = tuple[str, ...]


@dataclass
class VNode:
    """One drawn node: a layer, a folded block run, or an output marker."""

    id: str
    kind: str  # "layer", "folded" or "output"
    cluster: Path_  # the unfolded scope it is drawn in (() for the top level)
    members: list[str]  # IR nodes drawn by it, in order
    order: int
    op: str = ""
    # folded runs only
    paths: list[Path_] = field(default_factory=list)
    signature: str = ""
    shape: tuple[int, ...] | None = None
    in_shape: tuple[int, ...] | None = None
    params: int = 0
    errors: list[CnnError] = field(default_factory=list)
    unknown: bool = False  # no shape: downstream of an error


@dataclass
class VEdge:
    source: str
    target: str
    tensor: str  # the IR node whose output this edge carries
    shape: tuple[int, ...] | None
    bypass: bool  # part of a residual shortcut
    order: tuple[int, int]


@dataclass
class View:
    graph: nx.DiGraph
    depth: int | None
    nodes: dict[str, VNode]
    edges: list[VEdge]
    clusters: list[Path_]  # unfolded scopes that contain something, parents first
    owner: dict[str, str]  # IR node → id of the VNode that draws it
    rank_groups: list[tuple[Path_, list[str]]]  # drawn nodes to put side by side, left to right


def scope_title(graph: nx.DiGraph, path: Path_) -> str:
    """The scope's signature, prefixed by its instance name when the user chose that name."""
    scope = graph.graph["scopes"][path]
    name = path[-1]
    automatic = scope.block is not None and re.fullmatch(re.escape(scope.block) + r"\d+", name)
    return scope.signature if automatic else f"{name}: {scope.signature}"


def output_id(index: int) -> str:
    return "@output" if index == 0 else f"@output{index + 1}"


def build(graph: nx.DiGraph, depth: int | None = None) -> View:
    if depth is not None and depth < 1:
        raise ValueError("depth must be at least 1")
    order = {n: graph.nodes[n]["order"] for n in graph.nodes}

    # 1. Each IR node → the layer itself or its folded block instance.
    group_of: dict[str, str | Path_] = {}
    groups: dict[Path_, list[str]] = {}
    for node in ir.ordered(graph):
        path = graph.nodes[node]["path"]
        if depth is not None and len(path) >= depth:
            key = path[:depth]
            groups.setdefault(key, []).append(node)
            group_of[node] = key
        else:
            group_of[node] = node

    # 2. Runs of identical folded instances, each feeding only the next.
    runs: list[list[Path_]] = []
    outputs = set(graph.graph.get("outputs", []))
    for key in sorted(groups, key=lambda k: order[groups[k][0]]):
        if runs and _continues(graph, runs[-1][-1], key, groups, outputs):
            runs[-1].append(key)
        else:
            runs.append([key])

    nodes: dict[str, VNode] = {}
    owner: dict[str, str] = {}
    for node in ir.ordered(graph):
        if group_of[node] != node:
            continue
        data = graph.nodes[node]
        error = data.get("error")
        nodes[node] = VNode(
            node, "layer", data["path"], [node], order[node], op=data["op"], shape=data.get("shape"),
            errors=[error] if error is not None else [], unknown="shape" not in data and error is None,
        )
        owner[node] = node
    scopes = graph.graph["scopes"]
    for run in runs:
        members = [m for key in run for m in groups[key]]
        vid = "/".join(run[0])
        first, last = groups[run[0]], groups[run[-1]]
        out = _output_node(graph, last, set(last), outputs)
        inputs = [i for m in first for i in graph.nodes[m]["inputs"] if i not in set(first)]
        errors = [graph.nodes[m]["error"] for m in members if graph.nodes[m].get("error") is not None]
        signature = scopes[run[0]].signature if len(run) == 1 else f"{scopes[run[0]].signature} × {len(run)}"
        nodes[vid] = VNode(
            vid, "folded", run[0][:-1], members, order[first[0]], paths=list(run), signature=signature,
            shape=graph.nodes[out].get("shape"), in_shape=graph.nodes[inputs[0]].get("shape") if inputs else None,
            params=sum(graph.nodes[m].get("params", 0) for m in members), errors=errors,
            unknown="shape" not in graph.nodes[out] and not errors,
        )
        for m in members:
            owner[m] = vid

    # 3. Edges between drawn nodes; parallel IR edges between one pair of drawn nodes draw once.
    bypass, residuals = _bypass_edges(graph)
    edges: list[VEdge] = []
    seen: set[tuple[str, str]] = set()
    for node in ir.ordered(graph):
        for index, source in enumerate(graph.nodes[node]["inputs"]):
            pair = (owner[source], owner[node])
            if pair[0] == pair[1] or pair in seen:
                continue
            seen.add(pair)
            drawn_bypass = (source, node) in bypass and nodes[pair[0]].kind == nodes[pair[1]].kind == "layer"
            edges.append(VEdge(pair[0], pair[1], source, graph.nodes[source].get("shape"), drawn_bypass,
                               (order[node], index)))
    for index, out in enumerate(graph.graph.get("outputs", [])):
        vid = output_id(index)
        shape = graph.nodes[out].get("shape")
        nodes[vid] = VNode(vid, "output", (), [], len(order) + index, op="output", shape=shape,
                           unknown=shape is None)
        edges.append(VEdge(owner[out], vid, out, shape, False, (len(order) + index, 0)))

    # 4. Clusters: the unfolded scopes that hold a drawn node, with their ancestors, parents first.
    first_seen: dict[Path_, int] = {}
    for vnode in sorted(nodes.values(), key=lambda v: v.order):
        for end in range(1, len(vnode.cluster) + 1):
            first_seen.setdefault(vnode.cluster[:end], vnode.order)
    clusters = sorted(first_seen, key=lambda p: (first_seen[p], len(p)))

    return View(graph, depth, nodes, edges, clusters, owner, _rank_groups(graph, nodes, owner, residuals))


def _output_node(graph: nx.DiGraph, members: list[str], inside: set[str], outputs: set[str]) -> str:
    """The member whose tensor leaves the group (the last such one), else the last member."""
    leaving = [m for m in members if m in outputs or any(s not in inside for s in graph.successors(m))]
    return leaving[-1] if leaving else members[-1]


def _continues(graph: nx.DiGraph, previous: Path_, key: Path_, groups: dict[Path_, list[str]],
               outputs: set[str]) -> bool:
    """Whether block instance ``key`` extends the run ending in ``previous``: the same call in
    the same scope, fed only by ``previous``, which feeds nothing else."""
    scopes = graph.graph["scopes"]
    if previous[:-1] != key[:-1] or scopes[previous].signature != scopes[key].signature:
        return False
    before, after = set(groups[previous]), set(groups[key])
    for node in before:
        if node in outputs:
            return False
        if any(s not in before and s not in after for s in graph.successors(node)):
            return False
    if not any(s in after for n in before for s in graph.successors(n)):
        return False
    return all(p in before or p in after for n in after for p in graph.predecessors(n))


def _bypass_edges(graph: nx.DiGraph) -> tuple[set[tuple[str, str]], list[tuple[str, str]]]:
    """IR edges of residual shortcuts. ``residual`` lowers to ``add(body, shortcut)``: the
    shortcut is the body's own input (identity) or layers of its own (the ``shortcut auto``
    projection), followed back to where they split off. In a hand-written ``add`` of a tensor and
    something computed from it, that tensor is the shortcut.

    Also (body start, shortcut start) pairs for shortcuts with layers, to draw them side by side.
    """
    out: set[tuple[str, str]] = set()
    pairs: list[tuple[str, str]] = []
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        if data["op"] != "add" or len(data["inputs"]) < 2:
            continue
        body = data["inputs"][0]
        body_side = nx.ancestors(graph, body) | {body}
        for source in data["inputs"][1:]:
            if source == body:
                continue
            if source in body_side:  # identity shortcut: the body grew out of it
                out.add((source, node))
                continue
            if body in nx.ancestors(graph, source):  # `from x, f(x) -> add`: x is the bypass
                out.add((body, node))
                continue
            out.add((source, node))  # a shortcut with layers: follow it back to the split
            current, start = source, None
            while current not in body_side and graph.out_degree(current) == 1:
                producers = graph.nodes[current]["inputs"]
                if len(producers) != 1:
                    break
                out.add((producers[0], current))
                current, start = producers[0], current
            if start is not None and current in body_side:
                body_start = next((c for c in ir.consumers(graph, current) if c in body_side), None)
                if body_start is not None:
                    pairs.append((body_start, start))
    return out, pairs


def _rank_groups(graph: nx.DiGraph, nodes: dict[str, VNode], owner: dict[str, str],
                 residuals: list[tuple[str, str]]) -> list[tuple[Path_, list[str]]]:
    """Drawn nodes to place side by side, left to right: for each drawn concat the first node of
    each branch; for each residual with a projection, the body's first node and the shortcut's."""
    groups: list[tuple[Path_, list[str]]] = []
    for body_start, shortcut_start in residuals:
        pair = [owner[body_start], owner[shortcut_start]]
        if pair[0] != pair[1] and nodes[pair[0]].cluster == nodes[pair[1]].cluster:
            groups.append((nodes[pair[0]].cluster, pair))
    for node in ir.ordered(graph):
        if owner.get(node) != node or graph.nodes[node]["op"] != "concat":
            continue
        splits, starts = set(), []
        branch_ends = graph.nodes[node]["inputs"]
        for branch_end in branch_ends:
            if any(branch_end in nx.ancestors(graph, other) for other in branch_ends if other != branch_end):
                splits.add(branch_end)  # an empty branch: the split tensor itself
                continue
            current, split = branch_end, None
            while True:
                producers = graph.nodes[current]["inputs"]
                if len(producers) != 1:
                    break
                if graph.out_degree(producers[0]) > 1:
                    split = producers[0]
                    break
                current = producers[0]
            if split is None:
                continue
            splits.add(split)
            if owner[current] not in starts and owner[current] != owner[split]:
                starts.append(owner[current])
        if len(splits) != 1 or len(starts) < 2:
            continue
        clusters = {nodes[s].cluster for s in starts}
        if len(clusters) == 1:
            groups.append((clusters.pop(), starts))
    return sorted(groups, key=lambda g: [nodes[n].order for n in g[1]])
