"""``eliminate-concat``: the layers feeding a concat write straight into their channel slice of
its buffer, so the concat copies nothing for them (inception modules).

A producer gets ``write_into = (concat, channel offset)``; the concat gets ``eliminated = True``
when at least one producer does. Producers that cannot (see :func:`_why_not`) are copied as usual.
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from .rewrite import describe, record, why_not_private

NAME = "eliminate-concat"


def eliminate_concat(graph: nx.DiGraph) -> nx.DiGraph:
    for concat in ir.ordered(graph):
        data = graph.nodes[concat]
        if data["op"] != "concat":
            continue
        offset, written = 0, 0
        for producer in data["inputs"]:
            channels = graph.nodes[producer]["shape"][0]
            reason = _why_not(graph, concat, producer)
            if reason:
                record(graph, NAME, "skipped", producer,
                       f"{describe(graph, producer)} copied into {concat} ({describe(graph, concat)}): {reason}")
            else:
                graph.nodes[producer]["write_into"] = (concat, offset)
                written += 1
                record(graph, NAME, "changed", producer,
                       f"{describe(graph, producer)} writes into channels {offset}:{offset + channels} of {concat}")
            offset += channels
        if written:
            data["eliminated"] = True
    return graph


def _why_not(graph: nx.DiGraph, concat: str, producer: str) -> str:
    data = graph.nodes[producer]
    reason = why_not_private(graph, producer, "its output")
    if reason:
        return reason
    if graph.nodes[concat]["inputs"].count(producer) > 1:
        return "the concat uses it more than once"
    if data.get("eliminated"):
        return "it is a concat whose own inputs already write into it"
    if "write_into" in data:
        return f"it already writes into {data['write_into'][0]}"
    return ""
