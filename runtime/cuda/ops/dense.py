"""Fully connected layers and flattening on the GPU (the CPU's runtime/ops/dense.py: ``fc`` reads
its input as flat features in the user's C, H, W order).

fc is one GEMM with the bias and an optional fused activation in its epilogue; backward is two
GEMMs (dW = dy^T x, dx = dy W: transposes are flags, never copies) and a column sum (db).
Spatial inputs are reordered to channels-first once per batch, into a buffer the op keeps.
"""

from __future__ import annotations

import math

from ...kernels.cuda.epilogue import activation_code
from ...kernels.cuda.gemm import gemm
from ...kernels.cuda.layout import flatten_user_order, unflatten_user_order
from ...kernels.cuda.reduce import column_sums
from ...ops.base import Context, Op, register


def _flat(op: Op, x, buffer):
    """x as N x features in the user's order: a view when x is already flat, else ``buffer``
    (allocated on first use) filled by the reordering kernel."""
    n = x.shape[0]
    if x.ndim <= 2:
        return x.reshape(n, -1), buffer
    buffer = op.scratch(buffer, (n, math.prod(x.shape[1:])))
    flatten_user_order(x, buffer)
    return buffer, buffer


@register("flatten", backend="cuda")
class CudaFlattenOp(Op):

    def __init__(self, layer, in_shapes, out_shape, dtype, backend):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._dx = None

    def forward(self, inputs, out, ctx: Context) -> None:
        x = inputs[0]
        if x.ndim <= 2:
            self.backend.copy(out, x.reshape(x.shape[0], -1))
        else:
            flatten_user_order(x, out)

    def backward(self, dy):
        if not self.need_input_grad[0]:
            return [None]
        shape = (dy.shape[0], *self.in_shapes[0])
        if len(shape) <= 2:
            return [dy.reshape(shape)]
        self._dx = self.scratch(self._dx, shape)
        unflatten_user_order(dy, self._dx)
        return [self._dx]


@register("fc", backend="cuda")
class CudaFullyConnectedOp(Op):
    strided_out = True
    fuses_activation = True

    def __init__(self, layer, in_shapes, out_shape, dtype, backend):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._x = self._flat_x = self._dflat = self._dx = None

    def forward(self, inputs, out, ctx: Context) -> None:
        x, self._flat_x = _flat(self, inputs[0], self._flat_x)
        gemm(x, self.params["weight"], out=out, trans_b=True, bias=self.params.get("bias"),
             activation=activation_code(self.activation))  # fmt: skip
        self._x = x

    def backward(self, dy):
        x = self._x
        if x is None:
            raise RuntimeError("fc: backward before forward")
        if "weight" in self.grads:
            gemm(dy, x, out=self.grads["weight"], trans_a=True)
        if "bias" in self.grads:
            column_sums(dy, self.grads["bias"])
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        shape = (n, *self.in_shapes[0])
        self._dflat = self.scratch(self._dflat, (n, x.shape[1]))
        gemm(dy, self.params["weight"], out=self._dflat)
        if len(shape) <= 2:
            return [self._dflat.reshape(shape)]
        self._dx = self.scratch(self._dx, shape)
        unflatten_user_order(self._dflat, self._dx)
        return [self._dx]
