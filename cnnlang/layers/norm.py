"""Normalisation: ``batchnorm(eps = 1e-5, momentum = 0.1, affine = true)``,
``lrn(size = 5, alpha = 1e-4, beta = 0.75, k = 2)`` and ``dropout(p = 0.5)``."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType, Shape, arg, count, flag, fraction, positive_real, probability, real


@dataclass(frozen=True)
class BatchNorm(LayerType):
    op = "batchnorm"
    aliases = ("bn",)
    category = "elementwise"
    summary = "normalise each channel by batch statistics, then scale (gamma) and shift (beta)"

    eps: float = arg(positive_real, 1e-5)
    momentum: float = arg(fraction, 0.1, doc="weight of the new batch in the running averages")
    affine: bool = arg(flag, True, doc="learn gamma and beta")

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        channels = inputs[0][0]
        return {"gamma": (channels,), "beta": (channels,)} if self.affine else {}

    def buffer_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        channels = inputs[0][0]
        # Running statistics are state, not parameters: no gradient reaches them.
        return {"running_mean": (channels,), "running_var": (channels,)}


@dataclass(frozen=True)
class LocalResponseNorm(LayerType):
    op = "lrn"
    category = "opaque"
    summary = "local response normalisation across neighbouring channels (AlexNet)"

    size: int = arg(count, 5, doc="number of neighbouring channels")
    alpha: float = arg(real, 1e-4)
    beta: float = arg(real, 0.75)
    k: float = arg(real, 2.0)


@dataclass(frozen=True)
class Dropout(LayerType):
    op = "dropout"
    category = "elementwise"
    summary = "zero each value with probability p while training"

    p: float = arg(probability, 0.5, positional=True)

    def label(self) -> str:
        return f"dropout {self.p:g}"
