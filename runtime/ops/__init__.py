"""The registry of runtime ops: layer op name → Op class (one module per family of layers)."""

from __future__ import annotations

import networkx as nx
import numpy as np

from .activation import ActivationOp, SoftmaxOp
from .base import Context, Op, internal_shape, to_internal, to_user
from .conv import ConvOp
from .dense import FlattenOp, FullyConnectedOp
from .merge import AddOp, ConcatOp
from .norm import BatchNormOp, DropoutOp, LRNOp
from .pool import AvgPoolOp, GlobalAvgPoolOp, MaxPoolOp

OP_CLASSES: tuple[type[Op], ...] = (
    ConvOp, FullyConnectedOp, FlattenOp, MaxPoolOp, AvgPoolOp, GlobalAvgPoolOp,
    ActivationOp, SoftmaxOp, BatchNormOp, DropoutOp, LRNOp, AddOp, ConcatOp,
)
REGISTRY: dict[str, type[Op]] = {name: cls for cls in OP_CLASSES for name in cls.ops}


def op_class(op: str) -> type[Op]:
    """The Op class that runs layer op ``op``; KeyError if the runtime has none."""
    return REGISTRY[op]


def make_op(graph: nx.DiGraph, node: str, shapes: dict[str, tuple[int, ...]], dtype: np.dtype) -> Op:
    """The op for IR node ``node``, given every node's internal (channels-last) shape."""
    data = graph.nodes[node]
    return op_class(data["op"])(data["layer"], [shapes[i] for i in data["inputs"]], shapes[node], dtype)


__all__ = ["REGISTRY", "Context", "Op", "internal_shape", "make_op", "op_class", "to_internal", "to_user"]
