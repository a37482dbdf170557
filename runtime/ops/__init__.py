"""The registry of runtime ops: layer op name → Op class (one module per family of layers)."""

from __future__ import annotations

import importlib

from .base import Context, Op, internal_shape, to_internal, to_user

_MODULES = ("conv", "dense", "pool", "activation", "norm", "merge")
_REGISTRY: dict[str, type[Op]] = {}


def op_class(op: str) -> type[Op]:
    """The Op class that runs layer op ``op``; KeyError if the runtime has none."""
    if not _REGISTRY:
        for name in _MODULES:
            module = importlib.import_module(f"{__name__}.{name}")
            for value in vars(module).values():
                if isinstance(value, type) and issubclass(value, Op) and value.ops:
                    for key in value.ops:
                        _REGISTRY[key] = value
    return _REGISTRY[op]


__all__ = ["Context", "Op", "internal_shape", "op_class", "to_internal", "to_user"]
