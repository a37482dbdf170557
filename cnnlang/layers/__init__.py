"""The registry of layer types: DSL name → class. Adding a layer is a module and one line here."""

from __future__ import annotations

from .activation import ReLU, Sigmoid, Softmax, Tanh
from .base import ArgumentError, LayerType, Shape, ShapeError, Symbol, format_shape
from .conv import Conv, Conv1d
from .dense import Flatten, FullyConnected
from .merge import Add, Concat
from .norm import BatchNorm, Dropout, LocalResponseNorm
from .pool import AvgPool, GlobalAvgPool, MaxPool

LAYER_TYPES: tuple[type[LayerType], ...] = (
    Conv, Conv1d, MaxPool, AvgPool, GlobalAvgPool, FullyConnected, Flatten,
    ReLU, Tanh, Sigmoid, Softmax, BatchNorm, Dropout, LocalResponseNorm, Add, Concat,
)

REGISTRY: dict[str, type[LayerType]] = {}
for _cls in LAYER_TYPES:
    for _name in (_cls.op, *_cls.aliases):
        REGISTRY[_name] = _cls

__all__ = [
    "LAYER_TYPES", "REGISTRY", "ArgumentError", "LayerType", "Shape", "ShapeError", "Symbol", "format_shape",
]
