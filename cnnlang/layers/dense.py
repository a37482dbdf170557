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

    # -- reference: y = x W^T + b on the flat features (C, H, W order)
    def forward_reference(self, inputs, params, buffers, train=False):
        x = inputs[0].reshape(inputs[0].shape[0], -1)
        y = x @ params["weight"].T
        return y + params["bias"] if "bias" in params else y

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        x = inputs[0].reshape(inputs[0].shape[0], -1)
        grads = {"weight": dy.T @ x}
        if "bias" in params:
            grads["bias"] = dy.sum(axis=0)
        return [(dy @ params["weight"]).reshape(inputs[0].shape)], grads

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.FullyConnected(numel(inputs[0]), self.units, self.bias)


@dataclass(frozen=True)
class Flatten(LayerType):
    op = "flatten"
    category = "injective"
    weight_init_before = "look-through"
    summary = "C x H x W -> C*H*W flat features"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return (numel(inputs[0]),)

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        return f"{format_shape(inputs[0])} = {output[0]} features"

    def forward_reference(self, inputs, params, buffers, train=False):
        return inputs[0].reshape(inputs[0].shape[0], -1)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        return [dy.reshape(inputs[0].shape)], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.Flatten()
