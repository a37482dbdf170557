"""Structure recovery: a flat graph of imported layers → the nested items a .cnn file writes
(``residual { } shortcut ...``, ``concat { branch { } }``), where the graph allows it.

From each tensor the walk follows single consumers; at a fork it finds the first layer every
path reaches again (the merge). If the paths between are disjoint and self-contained, a
two-input ``add`` becomes a residual (the longer path is the body) and a ``concat`` becomes
branches, each path recovered recursively. Any other shape (an add of three, a path read from
outside, several outputs) makes :func:`recover_structure` return None, and the writer falls back
to named tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import networkx as nx

from .onnx_reader import ImportedGraph, Layer


@dataclass
class LayerItem:
    source: Layer | None  # None inside a block body (it stands for many layers)
    op: str
    values: dict[str, Any]  # every argument of the layer type, defaults included


@dataclass
class Residual:
    body: list
    shortcut: list | None  # None: `shortcut auto`
    merge: Layer | None = None  # the add (None inside a block body)
    projection: list = field(default_factory=list)  # the layers `shortcut auto` stands for


@dataclass
class Concat:
    branches: list[list]
    merge: Layer | None = None


@dataclass
class Call:
    block: Any  # blocks.Block
    args: list
    concrete: list  # the items it stands for (to know which layers it made)


@dataclass
class Repeat:
    n: Any
    body: list
    concrete: list[list] = field(default_factory=list)  # one list of items per repetition


def layer_item(layer: Layer) -> LayerItem:
    return LayerItem(layer, layer.op, {f.name: getattr(layer.layer, f.name) for f in fields(layer.layer)})


class _NotStructured(Exception):
    pass


def recover_structure(graph: ImportedGraph) -> list | None:
    """The network body as items, or None when the graph is not nested series-parallel."""
    if len(graph.outputs) != 1:
        return None
    dag = nx.DiGraph()
    dag.add_node(graph.input)
    by_id = {layer.id: layer for layer in graph.layers}
    for layer in graph.layers:
        dag.add_node(layer.id)
        for source in layer.inputs:
            dag.add_edge(source, layer.id)
    if any(dag.out_degree(n) == 0 for n in dag if n != graph.outputs[0]):
        return None  # a layer whose result nothing reads: only named tensors can say that
    walker = _Walker(dag, by_id, {graph.input: 0, **{layer.id: i + 1 for i, layer in enumerate(graph.layers)}},
                     graph.input_shape)
    try:
        return walker.chain(graph.input, graph.outputs[0], set(by_id))
    except _NotStructured:
        return None


class _Walker:
    def __init__(self, dag: nx.DiGraph, by_id: dict[str, Layer], order: dict[str, int], input_shape):
        self.dag, self.by_id, self.order, self.input_shape = dag, by_id, order, input_shape

    def shape(self, node: str) -> tuple[int, ...]:
        return self.by_id[node].shape if node in self.by_id else self.input_shape

    def chain(self, start: str, end: str, allowed: set[str]) -> list:
        items, current = [], start
        while current != end:
            following = [c for c in self.dag.successors(current) if c in allowed]
            if not following:
                raise _NotStructured
            if len(following) == 1 and len(self.by_id[following[0]].inputs) == 1:
                current = following[0]
                items.append(layer_item(self.by_id[current]))
                continue
            merge, segments = self.split(current, following, allowed)
            layer = self.by_id[merge]
            if layer.op == "add" and len(segments) == 2:
                body, shortcut = sorted(segments, key=lambda s: -len(s[1]))
                items.append(self.residual(current, layer, body, shortcut))
            elif layer.op == "concat":
                branches = [self.chain(current, end_, nodes) if nodes else [] for end_, nodes in segments]
                items.append(Concat(branches, layer))
            else:
                raise _NotStructured
            current = merge
        return items

    def split(self, fork: str, following: list[str], allowed: set[str]):
        """The merge layer where the paths from ``fork`` meet, and per input of it (end, layers between)."""
        reach = [({c} | nx.descendants(self.dag, c)) & allowed for c in following]
        common = set.intersection(*reach)
        if not common:
            raise _NotStructured
        merge = min(common, key=self.order.get)
        before_merge = set.union(*reach) - ({merge} | nx.descendants(self.dag, merge))
        segments, seen = [], set()
        for end in self.by_id[merge].inputs:
            if end == fork:
                segments.append((end, set()))
                continue
            nodes = ({end} | nx.ancestors(self.dag, end)) & before_merge
            if nodes & seen:
                raise _NotStructured
            seen |= nodes
            segments.append((end, nodes))
        if seen != before_merge:
            raise _NotStructured
        for end, nodes in segments:
            for node in nodes:
                if any(s not in nodes and s != fork for s in self.by_id[node].inputs):
                    raise _NotStructured
                if any(c not in nodes and c != merge for c in self.dag.successors(node)):
                    raise _NotStructured
                if node != end and merge in self.dag.successors(node):
                    raise _NotStructured
        return merge, segments

    def residual(self, fork: str, merge: Layer, body, shortcut) -> Residual:
        body_items = self.chain(fork, body[0], body[1])
        short_items = self.chain(fork, shortcut[0], shortcut[1]) if shortcut[1] else []
        if not short_items or self.is_auto_projection(fork, body[0], short_items):
            return Residual(body_items, None, merge, short_items)
        return Residual(body_items, short_items, merge)

    def is_auto_projection(self, fork: str, body_end: str, items: list) -> bool:
        """Whether ``shortcut auto`` makes exactly these layers: a 1x1 conv without bias, with
        the stride that fits, then a default batchnorm, where the shapes differ."""
        have, want = self.shape(fork), self.shape(body_end)
        if have == want or len(items) != 2 or [i.op for i in items] != ["conv", "batchnorm"] and [i.op for i in items] != ["conv1d", "batchnorm"]:
            return False
        conv, bn = items[0].values, items[1].values
        strides = [-(-b // a) for b, a in zip(have[1:], want[1:])]
        stride = (strides[0],) if len(set(strides)) == 1 else tuple(strides)
        expected = {"filters": want[0], "stride": stride, "pad": (0,), "dilation": (1,), "groups": 1,
                    "bias": False, "frozen": False, "weights": None}
        one_by_one = set(conv["kernel"]) == {1}
        return one_by_one and {k: conv[k] for k in expected} == expected and bn == {"eps": 1e-5, "momentum": 0.1, "affine": True}
