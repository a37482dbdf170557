"""Fully connected layers and flattening: ``fc(units, bias = true)``, ``flatten``.

``fc`` accepts any input and treats it as flat features (as Caffe's InnerProduct does), so a
``flatten`` before it is optional.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType, Shape, arg, count, flag, format_shape, numel


@dataclass(frozen=True)
class FullyConnected(LayerType):
    op = "fc"
    aliases = ("linear", "dense")
    category = "anchor"
    summary = "fully connected: every output sees every input"

    units: int = arg(count, positional=True, doc="number of outputs")
    bias: bool = arg(flag, True)
    frozen: bool = arg(flag, False, doc="fixed weights that training does not change")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return (self.units,)

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        shapes = {"weight": (self.units, numel(inputs[0]))}
        if self.bias:
            shapes["bias"] = (self.units,)
        return shapes

    @property
    def trainable(self) -> bool:
        return not self.frozen

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return numel(inputs[0]) * self.units

    def window(self, inputs: list[Shape]):
        return "global"

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        source = f" ({format_shape(inputs[0])})" if len(inputs[0]) > 1 else ""
        return f"{numel(inputs[0])} inputs{source} -> {self.units} units"

    def label(self) -> str:
        return f"fc {self.units}"


@dataclass(frozen=True)
class Flatten(LayerType):
    op = "flatten"
    category = "injective"
    summary = "C x H x W -> C*H*W flat features"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return (numel(inputs[0]),)

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        return f"{format_shape(inputs[0])} = {output[0]} features"
