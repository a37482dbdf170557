"""Shape inference: every node's output shape from its inputs' (W2 = (W1 - F + 2P)/S + 1).

Errors do not stop the pass: a failing node gets ``error`` and no ``shape``, nodes that depend on
it are skipped, and independent failures elsewhere are still found. All of them are appended to
``graph.graph["errors"]`` in source order.
"""

from __future__ import annotations

import networkx as nx

from .. import ir
from ..errors import CnnError
from ..layers import ShapeError, format_shape


def _display(graph: nx.DiGraph, node: str) -> str:
    return "the network input" if graph.nodes[node]["op"] == "input" else f"'{node}'"


def _error(graph: nx.DiGraph, node: str, failure: ShapeError) -> CnnError:
    data = graph.nodes[node]
    error = CnnError(f"{data['op']} '{node}': {failure}", data["span"])
    if failure.mismatch is not None and data.get("shortcut") == "identity":
        body, shortcut = (graph.nodes[n]["shape"] for n in data["inputs"])
        error.message = (
            f"residual '{node}': the body gives {format_shape(body)} but the identity shortcut gives "
            f"{format_shape(shortcut)}; write 'shortcut auto' to project the shortcut"
        )
        error.with_note(graph.nodes[data["inputs"][0]]["span"], f"the body ends here ({format_shape(body)})")
    elif failure.mismatch is not None:
        first, second = (data["inputs"][i] for i in failure.mismatch)
        shapes = [graph.nodes[n]["shape"] for n in (first, second)]
        error.message = (
            f"{data['op']} '{node}': {_display(graph, first)} is {format_shape(shapes[0])} but "
            f"{_display(graph, second)} is {format_shape(shapes[1])}"
            + (" (other than channels, sizes must agree)" if data["op"] == "concat" else "")
        )
        for source, shape in zip((first, second), shapes):
            error.with_note(graph.nodes[source]["span"], f"{_display(graph, source)} ({format_shape(shape)}) comes from here")
    for call, block in ir.enclosing_calls(graph, data["path"], data["call_stack"]):
        error.with_note(call, f"in block '{block}' used here")
    return error


def infer_shapes(graph: nx.DiGraph) -> nx.DiGraph:
    """Annotate ``shape`` on every node that can have one."""
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        data.pop("error", None)
        data.pop("shape", None)
        inputs = [graph.nodes[i].get("shape") for i in data["inputs"]]
        if data["layer"] is None or any(shape is None for shape in inputs):
            continue  # a layer after a failure, or lowering's placeholder for a failed statement
        try:
            data["shape"] = data["layer"].output_shape(inputs)
        except ShapeError as failure:
            error = _error(graph, node, failure)
            data["error"] = error
            graph.graph["errors"].append(error)
    return graph
