"""Element-wise activations (``relu``, ``tanh``, ``sigmoid``) and ``softmax`` over channels."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType


@dataclass(frozen=True)
class ReLU(LayerType):
    op = "relu"
    category = "elementwise"
    summary = "max(0, x)"


@dataclass(frozen=True)
class Tanh(LayerType):
    op = "tanh"
    category = "elementwise"
    summary = "hyperbolic tangent"


@dataclass(frozen=True)
class Sigmoid(LayerType):
    op = "sigmoid"
    category = "elementwise"
    summary = "1 / (1 + exp(-x))"


@dataclass(frozen=True)
class Softmax(LayerType):
    op = "softmax"
    category = "opaque"
    summary = "normalised exponentials over the channel axis"
