"""Passes are plain functions graph -> graph, each described by one :class:`PassSpec` and run by
one pipeline runner that verifies the IR after each: the analyses every model gets (shapes, costs,
receptive fields) and the optimisations (cnnlang/passes/optimise.py) alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import networkx as nx

from .. import ir
from .costs import count_costs
from .receptive import receptive_field
from .shapes import infer_shapes
from .lint import lint

Pass = Callable[[nx.DiGraph], nx.DiGraph]


@dataclass(frozen=True)
class PassSpec:
    """A pass: its name, its function, and whether it only adds attributes (else it may remove
    nodes or change parameters, so costs must be counted again afterwards)."""

    name: str
    run: Pass
    annotates: bool = False


ANALYSES: tuple[PassSpec, ...] = (
    PassSpec("infer-shapes", infer_shapes, annotates=True),
    PassSpec("count-costs", count_costs, annotates=True),
    PassSpec("receptive-field", receptive_field, annotates=True),
    PassSpec("lint", lint, annotates=True),
)


def run_pipeline(graph: nx.DiGraph, passes: Sequence[PassSpec] = ANALYSES, log: str | None = None) -> nx.DiGraph:
    """Run ``passes`` in order, verifying the IR before the first and after each. With ``log``,
    each pass's name is appended to the graph attribute of that name as it completes."""
    ir.verify(graph)
    for spec in passes:
        graph = spec.run(graph)
        if log is not None:
            graph.graph.setdefault(log, []).append(spec.name)
        ir.verify(graph)
    return graph


__all__ = ["ANALYSES", "Pass", "PassSpec", "count_costs", "infer_shapes", "lint", "receptive_field", "run_pipeline"]
