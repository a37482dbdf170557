"""Pooling on the GPU: the CPU ops (runtime/ops/pool.py), with their geometry, scratch and views,
running the kernels of runtime/kernels/cuda/pool.py."""

from __future__ import annotations

from ...kernels.cuda import pool as cuda_kernels
from ...ops import pool as cpu
from ...ops.base import register


@register("maxpool", backend="cuda")
class MaxPoolOp(cpu.MaxPoolOp):
    """``maxpool``: the arg-max recorded forward routes the gradient back, gathered per input
    (which needs the window geometry that the CPU's scatter does not)."""

    kernels = cuda_kernels

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        dx = self._input_grad(n)
        dy4, dx4 = dy.reshape(n, *self._out_image), dx.reshape(n, *self._in_image)
        self.kernels.maxpool_backward(dy4, self._argmax, dx4, *self._args)
        return [dx]


@register("avgpool", backend="cuda")
class AvgPoolOp(cpu.AvgPoolOp):
    kernels = cuda_kernels


@register("globalavgpool", backend="cuda")
class GlobalAvgPoolOp(cpu.GlobalAvgPoolOp):
    kernels = cuda_kernels
