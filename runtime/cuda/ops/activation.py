"""Activations on the GPU: ``relu``, ``tanh``, ``sigmoid``, ``prelu`` and ``softmax``, the CPU
ops (runtime/ops/activation.py) running the kernels of runtime/kernels/cuda/activation.py.
PReLU's slope gradient is a column sum without atomics (runtime/kernels/cuda/reduce.py)."""

from __future__ import annotations

from ...kernels.cuda.activation import (
    activation_backward,
    activation_forward,
    prelu_forward,
    prelu_input_grad,
    prelu_slope_terms,
    softmax_backward,
    softmax_forward,
)
from ...kernels.cuda.reduce import column_sums
from ...ops import activation as cpu
from ...ops.base import Context, register


@register("relu", "tanh", "sigmoid", backend="cuda")
class ActivationOp(cpu.ActivationOp):
    """``relu``, ``tanh``, ``sigmoid`` on flat views; backward through the saved output."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        activation_forward(inputs[0].reshape(-1), out.reshape(-1), self._kind)
        self._y = out

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        activation_backward(self._y.reshape(-1), dy.reshape(-1), self._dx.reshape(-1), self._kind)
        return [self._dx]


@register("softmax", backend="cuda")
class SoftmaxOp(cpu.SoftmaxOp):
    """``softmax`` over the channel axis, one block per row."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        softmax_forward(inputs[0].reshape(-1, self._channels), out.reshape(-1, self._channels))
        self._y = out

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        c = self._channels
        self._dx = self.scratch(self._dx, dy.shape)
        softmax_backward(self._y.reshape(-1, c), dy.reshape(-1, c), self._dx.reshape(-1, c))
        return [self._dx]


@register("prelu", backend="cuda")
class PReLUOp(cpu.PReLUOp):
    """``prelu``: slope per channel (the last axis) or one shared."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0]
        prelu_forward(x.reshape(-1), self.params["weight"], out.reshape(-1))
        self._x = x

    def backward(self, dy) -> list:
        x = self._x.reshape(-1)
        slopes = self.params["weight"].size  # 1 (shared) or the channels, the last axis
        self._where = self.scratch(self._where, (dy.size,))
        prelu_slope_terms(x, dy.reshape(-1), self._where)
        column_sums(self._where.reshape(dy.size // slopes, slopes), self.grads["weight"].reshape(-1))
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        prelu_input_grad(x, dy.reshape(-1), self.params["weight"], self._dx.reshape(-1))
        return [self._dx]
