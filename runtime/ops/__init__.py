"""The registry of runtime ops: (layer op name, backend) -> Op class.

Every module of this package binds one family of layers to its kernels and registers its Op
classes with :func:`~.base.register`; importing the package imports them all, so a new op module
needs no line here.
"""

from __future__ import annotations

import importlib
import pkgutil

import networkx as nx
import numpy as np

from ..backend import CPU, Backend
from .base import REGISTRY, Context, Op, internal_shape, register, to_internal, to_user

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def op_class(op: str, backend: str | Backend = CPU) -> type[Op]:
    """The Op class that runs layer op ``op`` on ``backend``; KeyError if there is none."""
    name = backend if isinstance(backend, str) else backend.name
    return REGISTRY[(op, name)]


def make_op(
    graph: nx.DiGraph, node: str, shapes: dict[str, tuple[int, ...]], dtype: np.dtype, backend: Backend = CPU
) -> Op:
    """The op for IR node ``node``, given every node's internal (channels-last) shape."""
    data = graph.nodes[node]
    cls = op_class(data["op"], backend)
    return cls(data["layer"], [shapes[i] for i in data["inputs"]], shapes[node], dtype, backend)


__all__ = [
    "REGISTRY", "Context", "Op", "internal_shape", "make_op", "op_class", "register", "to_internal", "to_user",
]
