"""Passes are plain functions graph → graph, run in a pipeline that verifies the IR after each."""

from __future__ import annotations

from typing import Callable, Sequence

import networkx as nx

from .. import ir
from .costs import count_costs
from .receptive import receptive_field
from .shapes import infer_shapes
from .lint import lint

Pass = Callable[[nx.DiGraph], nx.DiGraph]

ANALYSES: tuple[Pass, ...] = (infer_shapes, count_costs, receptive_field, lint)


def run_pipeline(graph: nx.DiGraph, passes: Sequence[Pass] = ANALYSES) -> nx.DiGraph:
    ir.verify(graph)
    for step in passes:
        graph = step(graph)
        ir.verify(graph)
    return graph


__all__ = ["ANALYSES", "Pass", "count_costs", "infer_shapes", "lint", "receptive_field", "run_pipeline"]
