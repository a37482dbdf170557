"""Every pass on every zoo model (each on top of the passes before it, and alone): the IR
verifies, the input graph is untouched, removed tensors resolve to survivors of the same shape,
concat slices tile their buffer, and the memory plan never puts two live buffers in one slot
(lifetimes recomputed here, independently of the planner)."""

from __future__ import annotations

import copy
import math
from functools import lru_cache

import pytest

import cnnlang
from cnnlang import ir
from cnnlang.model import zoo_names
from cnnlang.passes.optimise import PASS_NAMES, optimise

PREFIXES = [PASS_NAMES[:count] for count in range(1, len(PASS_NAMES) + 1)]


@lru_cache(maxsize=None)
def original(name: str):
    return cnnlang.load(name).graph


def check_survivors(before, after) -> None:
    aliases = after.graph["aliases"]
    assert set(after.nodes) <= set(before.nodes), "passes never invent or rename nodes"
    for node in before.nodes:
        if node in after:
            assert after.nodes[node]["shape"] == before.nodes[node]["shape"]
        elif node in aliases:
            survivor = aliases[node]
            assert survivor in after
            assert after.nodes[survivor]["shape"] == before.nodes[node]["shape"]
    for old, new in zip(before.graph["outputs"], after.graph["outputs"], strict=True):
        assert aliases.get(old, old) == new


def check_concats(graph) -> None:
    for concat in graph.nodes:
        data = graph.nodes[concat]
        if data["op"] != "concat":
            continue
        offset = 0
        for producer in data["inputs"]:
            channels = graph.nodes[producer]["shape"][0]
            if "write_into" in graph.nodes[producer]:
                assert graph.nodes[producer]["write_into"] == (concat, offset)
            offset += channels
        assert offset == data["shape"][0]  # the slices tile the channels, in order, without overlap
        assert data.get("eliminated", False) == any("write_into" in graph.nodes[p] for p in data["inputs"])


def storage_lifetimes(graph) -> dict[str, list[int]]:
    """Each buffer owner → [first write, last read], by walking writers and readers directly."""
    order = ir.ordered(graph)
    step = {n: i for i, n in enumerate(order)}
    outputs = set(graph.graph["outputs"])

    def owner(node):
        data = graph.nodes[node]
        if "write_into" in data:
            return owner(data["write_into"][0])
        if data.get("in_place"):  # over the only input; a residual conv over its shortcut
            return owner(data["inputs"][1] if data.get("residual") else data["inputs"][0])
        return node

    def read_at(reader):  # a streamed depthwise conv's input is read by the conv it runs inside
        return step[graph.nodes[reader].get("streamed_into", reader)]

    spans: dict[str, list[int]] = {}
    for node in order[1:]:
        if "streamed_into" in graph.nodes[node]:
            continue  # no buffer: nothing stores its output
        readers = [read_at(c) for c in order if node in graph.nodes[c]["inputs"]]
        last = len(order) if node in outputs else max(readers + [step[node]])
        span = spans.setdefault(owner(node), [step[node], last])
        span[0], span[1] = min(span[0], step[node]), max(span[1], last)
    return spans


def check_memory(graph) -> None:
    memory = graph.graph["memory"]
    spans = storage_lifetimes(graph)
    assert set(memory["assign"]) == set(spans)
    by_slot: dict[int, list[str]] = {}
    for node, slot in memory["assign"].items():
        assert memory["slots"][slot] >= math.prod(graph.nodes[node]["shape"])
        by_slot.setdefault(slot, []).append(node)
    for slot, owners in by_slot.items():
        for i, a in enumerate(owners):
            for b in owners[i + 1:]:
                (s1, e1), (s2, e2) = spans[a], spans[b]
                assert e1 < s2 or e2 < s1, f"{a} and {b} are live together in slot {slot}"
    assert memory["after"] == sum(memory["slots"]) <= memory["before"]
    assert memory["before"] == sum(math.prod(d["shape"]) for n, d in original_of(graph).nodes(data=True) if d["op"] != "input")


def original_of(graph):
    return original(graph.graph["zoo_name"])


@pytest.mark.parametrize("name", zoo_names())
def test_every_pass_keeps_the_invariants(name):
    before = original(name)
    snapshot = (ir.dump(before), copy.deepcopy(dict(before.nodes(data=True))), copy.deepcopy(before.graph["outputs"]))
    for names in PREFIXES + [(single,) for single in PASS_NAMES]:
        after = optimise(before, names)
        ir.verify(after)
        assert after.graph["optimised"] == list(names)
        check_survivors(before, after)
        check_concats(after)
        if "plan-memory" in names:
            after.graph["zoo_name"] = name
            check_memory(after)
        for entry in after.graph["pass_log"]:
            assert entry["pass"] in names and entry["status"] in ("changed", "skipped")
            assert entry["line"] == before.nodes[entry["node"]]["span"].line
    assert (ir.dump(before), dict(before.nodes(data=True)), before.graph["outputs"]) == snapshot
    assert "aliases" not in before.graph and "memory" not in before.graph


def test_googlenet_peak_memory_falls_by_at_least_40_percent():
    memory = optimise(original("googlenet")).graph["memory"]
    assert memory["after"] <= 0.6 * memory["before"]


def test_resnet50_is_fully_fused():
    graph = optimise(original("resnet50"))
    ops = {data["op"] for _, data in graph.nodes(data=True)}
    assert ops == {"input", "conv", "maxpool", "globalavgpool", "fc"}  # each add in its block's last conv
    residual = [n for n in graph if graph.nodes[n].get("residual")]
    assert len(residual) == 16 and all(graph.nodes[n]["activation"] == "relu" for n in residual)
    # (winograd declines every conv that is not 3x3 stride 1, by design: it chooses, not fuses)
    assert not [e for e in graph.graph["pass_log"] if e["status"] == "skipped" and e["pass"] != "winograd"]
