"""Pooling on the GPU: the CPU ops (runtime/ops/pool.py) with their geometry, scratch and views,
running the kernels of runtime/kernels/cuda/pool.py."""

from __future__ import annotations

import numpy as np

from ...kernels.cuda.pool import (
    avgpool_backward,
    avgpool_forward,
    global_avgpool_backward,
    global_avgpool_forward,
    maxpool_backward,
    maxpool_forward,
)
from ...ops import pool as cpu
from ...ops.base import Context, register


@register("maxpool", backend="cuda")
class MaxPoolOp(cpu.MaxPoolOp):
    """``maxpool``: the arg-max recorded forward routes the gradient back (gathered per input)."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        self._argmax = self.scratch(self._argmax, (n, *self._out_image), np.int32)
        maxpool_forward(x.reshape(n, *self._in_image), out.reshape(n, *self._out_image), self._argmax, *self._args)

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        dx = self._input_grad(n)
        maxpool_backward(dy.reshape(n, *self._out_image), self._argmax, dx.reshape(n, *self._in_image), *self._args)
        return [dx]


@register("avgpool", backend="cuda")
class AvgPoolOp(cpu.AvgPoolOp):
    """``avgpool`` with PyTorch's divisor (``count_pad``)."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        avgpool_forward(x.reshape(n, *self._in_image), out.reshape(n, *self._out_image), *self._args)

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        dx = self._input_grad(n)
        avgpool_backward(dy.reshape(n, *self._out_image), dx.reshape(n, *self._in_image), *self._args)
        return [dx]


@register("globalavgpool", backend="cuda")
class GlobalAvgPoolOp(cpu.GlobalAvgPoolOp):
    """``globalavgpool``: each channel's mean over all positions."""

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        global_avgpool_forward(x.reshape(n, *self._in_image), out.reshape(n, *self._out_image))

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        self._dx = self.scratch(self._dx, (n, *self.in_shapes[0]))
        global_avgpool_backward(dy.reshape(n, *self._out_image), self._dx.reshape(n, *self._in_image))
        return [self._dx]
