"""Activation ops: ``relu``, ``tanh``, ``sigmoid``, ``prelu`` (element-wise, any rank) and
``softmax`` over the channel axis (the last one inside the runtime; the features of a flat N x F
input).

Backward passes work from the saved forward output (the input for prelu), which the executor
keeps until then."""

from __future__ import annotations

import numpy as np

from ..backend import CPU
from ..kernels.cpu import activation as cpu_kernels
from .base import Context, Op, register


@register("relu", "tanh", "sigmoid")
class ActivationOp(Op):
    """``relu``, ``tanh``, ``sigmoid`` on flat views of the arrays."""

    #: the module whose kernels the op runs (a device backend's op subclasses with its own)
    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._kind = self.kernels.KINDS[layer.op]
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        self.kernels.activation_forward(inputs[0].reshape(-1), out.reshape(-1), self._kind)
        self._y = out

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        self.kernels.activation_backward(self._y.reshape(-1), dy.reshape(-1), self._dx.reshape(-1), self._kind)
        return [self._dx]


@register("softmax")
class SoftmaxOp(Op):
    """``softmax`` over the last (channel) axis, row by row."""

    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._channels = in_shapes[0][-1]
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        self.kernels.softmax_forward(inputs[0].reshape(-1, self._channels), out.reshape(-1, self._channels))
        self._y = out

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        c = self._channels
        self._dx = self.scratch(self._dx, dy.shape)
        self.kernels.softmax_backward(self._y.reshape(-1, c), dy.reshape(-1, c), self._dx.reshape(-1, c))
        return [self._dx]


@register("prelu")
class PReLUOp(Op):
    """``prelu``: y = x where x > 0, else a x, with a per channel (the last axis here) or one
    shared. NumPy's ufuncs are vectorised already (as for tanh), so there is no Numba kernel."""

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._where: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        xp = self.backend.xp
        x = inputs[0]
        negative = x <= 0
        xp.multiply(x, self.params["weight"], out=out, where=negative)  # out may be x (in place)
        if out is not x:
            xp.copyto(out, x, where=~negative)
        self._x = x

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        xp = self.backend.xp
        x = self._x
        self._where = self.scratch(self._where, dy.shape)
        negative = self._where
        xp.multiply(dy, x, out=negative)
        negative[x > 0] = 0
        slopes = self.grads["weight"].size  # 1 (shared) or the channels, the last axis
        self.grads["weight"][...] = negative.reshape(-1, slopes).sum(axis=0)
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        xp.multiply(dy, self.params["weight"], out=self._dx)
        xp.copyto(self._dx, dy, where=x > 0)
        return [self._dx]
