"""The optimisation pipeline: named graph → graph passes for inference, run in a fixed order.

Each pass edits the graph it is given (``optimise`` hands it a private copy), records what it
changed and what it declined in ``graph.graph["pass_log"]``, and leaves a graph that verifies.
The optimised graph is for inference only: training runs the original.
"""

from __future__ import annotations

from typing import Iterable

import networkx as nx

from .. import ir
from . import PassSpec, run_pipeline
from .choose_algorithm import choose_winograd
from .costs import count_costs
from .dead_code import eliminate_dead_code
from .eliminate_concat import eliminate_concat
from .fold_batchnorm import fold_batchnorm
from .fuse_activation import fuse_activation
from .fuse_add_relu import fuse_add_relu
from .fuse_depthwise import fuse_depthwise
from .fuse_residual import fuse_residual
from .inference import simplify_inference
from .plan_memory import plan_memory, unplanned_elements
from .rewrite import copy_graph

OPTIMISATIONS: tuple[PassSpec, ...] = (
    PassSpec("inference", simplify_inference),
    PassSpec("dead-code", eliminate_dead_code),
    PassSpec("fold-batchnorm", fold_batchnorm),
    PassSpec("fuse-activation", fuse_activation),
    PassSpec("fuse-add-relu", fuse_add_relu),
    PassSpec("fuse-residual", fuse_residual),
    PassSpec("fuse-depthwise", fuse_depthwise, annotates=True),
    PassSpec("eliminate-concat", eliminate_concat, annotates=True),
    PassSpec("winograd", choose_winograd, annotates=True),
    PassSpec("plan-memory", plan_memory, annotates=True),
)
PASS_NAMES: tuple[str, ...] = tuple(spec.name for spec in OPTIMISATIONS)


def pass_names(passes: str | Iterable[str] | None) -> list[str]:
    """None, "none" or [] → no passes; "all" → every pass; else names (a list, or one string
    of comma-separated names), in pipeline order. ValueError names an unknown pass."""
    if passes is None:
        return []
    if isinstance(passes, str):
        passes = {"all": PASS_NAMES, "none": ()}.get(passes, [p.strip() for p in passes.split(",") if p.strip()])
    chosen = set(passes)
    unknown = sorted(chosen - set(PASS_NAMES))
    if unknown:
        raise ValueError(f"unknown pass '{unknown[0]}'; the passes are: {', '.join(PASS_NAMES)}")
    return [name for name in PASS_NAMES if name in chosen]


def optimise(graph: nx.DiGraph, names: Iterable[str] | None = None) -> nx.DiGraph:
    """A copy of ``graph`` with the chosen passes (None: all) applied in pipeline order.

    The input graph is never changed. Raises ValueError for an unknown pass name or a graph with
    errors (a model that does not compile cannot be optimised).
    """
    chosen = set(PASS_NAMES if names is None else pass_names(list(names)))
    if graph.graph.get("errors"):
        raise ValueError("the model has errors; fix them before optimising")
    graph = copy_graph(graph)
    graph.graph.setdefault("aliases", {})
    graph.graph.setdefault("pass_log", [])
    graph.graph.setdefault("optimised", [])
    if "plan-memory" in chosen:  # its "before": the graph as written, one buffer per layer
        graph.graph.setdefault("unoptimised_elements", unplanned_elements(graph))
    chosen_specs = [spec for spec in OPTIMISATIONS if spec.name in chosen]
    graph = run_pipeline(graph, chosen_specs, log="optimised")
    if not all(spec.annotates for spec in chosen_specs):
        graph = count_costs(graph)  # shapes of survivors are unchanged; parameters and totals are not
    return graph
