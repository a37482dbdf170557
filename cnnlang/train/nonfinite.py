"""Finding where a forward pass first went non-finite, to name the layer in the error."""

from __future__ import annotations

import numpy as np

from cnnlang import ir


def first_nonfinite(network) -> str | None:
    """A sentence naming the first node (in execution order) whose output of the last forward
    pass holds NaN or infinity, or whose parameters do; None when all are finite. (On a device
    the values are copied to the host to look: this runs once, after a failure.)"""
    graph = network.model.graph
    values = network.plan.values
    network.pull()
    for node in ir.ordered(graph):
        data = graph.nodes[node]
        bad_params = [
            name for name, array in network.params.items()
            if name.rsplit(".", 1)[0] == node and not np.isfinite(array).all()
        ]
        where = f"layer '{node}' ({_describe(data)})"
        if bad_params:
            return f"{where} has non-finite parameters: {', '.join(bad_params)}"
        value = values.get(node)
        value = None if value is None else network.backend.to_host(value)
        if value is not None and not np.isfinite(value).all():
            if data["op"] == "input":
                return "the input batch holds NaN or infinity"
            count = int(value.size - np.isfinite(value).sum())
            return f"{where} produced {count:,} non-finite values"
    return None


def _describe(data: dict) -> str:
    layer = data["layer"]
    label = layer.label() if layer is not None else data["op"]
    return f"{label} at line {data['span'].line}"
