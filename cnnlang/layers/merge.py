"""Layers that join tensors: ``add`` (residual sums) and ``concat`` (along channels)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType, Shape, ShapeError, format_shape


@dataclass(frozen=True)
class Add(LayerType):
    op = "add"
    category = "merge"
    min_inputs = 2
    max_inputs = None
    summary = "element-wise sum of inputs of one shape"
    notes = "join tensors: `from a, b -> add`"
    weight_init_before = "look-through"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        for index, shape in enumerate(inputs[1:], start=1):
            if shape != inputs[0]:
                raise ShapeError(
                    f"add needs inputs of one shape, got {format_shape(inputs[0])} and {format_shape(shape)}",
                    mismatch=(0, index),
                )
        return inputs[0]

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        return f"sum of {len(inputs)} tensors of {format_shape(output)}"

    def forward_reference(self, inputs, params, buffers, train=False):
        return sum(inputs[1:], inputs[0])

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        return [dy.copy() for _ in inputs], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.Add()


@dataclass(frozen=True)
class Concat(LayerType):
    op = "concat"
    category = "merge"
    min_inputs = 1
    max_inputs = None
    summary = "join inputs along the channel axis; other axes must agree"
    weight_init_before = "look-through"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        first = inputs[0]
        for index, shape in enumerate(inputs[1:], start=1):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                raise ShapeError(
                    "concat joins along channels, so the other axes must agree: got "
                    f"{format_shape(first)} and {format_shape(shape)}",
                    mismatch=(0, index),
                )
        return (sum(s[0] for s in inputs), *first[1:])

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        return f"C = {' + '.join(str(s[0]) for s in inputs)} = {output[0]}"

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        return np.concatenate(inputs, axis=1)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        edges = np.cumsum([x.shape[1] for x in inputs])[:-1]
        return [part.copy() for part in np.split(dy, edges, axis=1)], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.Concat()
