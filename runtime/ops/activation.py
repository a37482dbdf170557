"""Activation ops: ``relu``, ``tanh``, ``sigmoid`` (element-wise, any rank) and ``softmax``
over the channel axis (the last one inside the runtime; the features of a flat N x F input).

Backward passes work from the saved forward output, which the executor keeps until then."""

from __future__ import annotations

import numpy as np

from ..backend import CPU
from ..kernels.cpu.activation import KINDS, activation_backward, activation_forward, softmax_backward, softmax_forward
from .base import Context, Op, register


@register("relu", "tanh", "sigmoid")
class ActivationOp(Op):
    """``relu``, ``tanh``, ``sigmoid`` on flat views of the arrays."""


    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._kind = KINDS[layer.op]
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        activation_forward(inputs[0].reshape(-1), out.reshape(-1), self._kind)
        self._y = out

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        activation_backward(self._y.reshape(-1), dy.reshape(-1), self._dx.reshape(-1), self._kind)
        return [self._dx]


@register("softmax")
class SoftmaxOp(Op):
    """``softmax`` over the last (channel) axis, row by row."""

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._channels = in_shapes[0][-1]
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        softmax_forward(inputs[0].reshape(-1, self._channels), out.reshape(-1, self._channels))
        self._y = out

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        c = self._channels
        self._dx = self.scratch(self._dx, dy.shape)
        softmax_backward(self._y.reshape(-1, c), dy.reshape(-1, c), self._dx.reshape(-1, c))
        return [self._dx]
