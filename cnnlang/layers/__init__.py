"""The registry of layer types: DSL name -> class. A layer type registers itself when its class is
defined (``LayerType.__init_subclass__``), so adding one to a module here needs no line in this
file; a new module needs its import below."""

from __future__ import annotations

from . import conv, pool, dense, activation, norm, merge  # noqa: F401  (defines and registers, in table order)
from .base import DEFINED, ArgumentError, LayerType, Shape, ShapeError, Symbol, format_shape

LAYER_TYPES: tuple[type[LayerType], ...] = tuple(DEFINED)

REGISTRY: dict[str, type[LayerType]] = {}
for _cls in LAYER_TYPES:
    for _name in (_cls.op, *_cls.aliases):
        REGISTRY[_name] = _cls

#: Activations conv, conv1d and fc can apply in their epilogue (relu also add's).
EPILOGUE_ACTIVATIONS: tuple[str, ...] = tuple(cls.op for cls in LAYER_TYPES if cls.epilogue_activation)

__all__ = [
    "EPILOGUE_ACTIVATIONS", "LAYER_TYPES", "REGISTRY", "ArgumentError", "LayerType", "Shape", "ShapeError",
    "Symbol", "format_shape",
]
