"""Activations on the GPU: ``relu``, ``tanh``, ``sigmoid``, ``prelu`` and ``softmax``, the CPU
ops (runtime/ops/activation.py) running the kernels of runtime/kernels/cuda/activation.py.
PReLU's slope gradient is a column sum without atomics (runtime/kernels/cuda/reduce.py)."""

from __future__ import annotations

from ...kernels.cuda import activation as cuda_kernels
from ...kernels.cuda.activation import prelu_forward, prelu_input_grad, prelu_slope_terms
from ...kernels.cuda.reduce import column_sums
from ...ops import activation as cpu
from ...ops.base import Context, register


@register("relu", "tanh", "sigmoid", backend="cuda")
class ActivationOp(cpu.ActivationOp):
    kernels = cuda_kernels


@register("softmax", backend="cuda")
class SoftmaxOp(cpu.SoftmaxOp):
    """``softmax`` over the channel axis, one block per row."""

    kernels = cuda_kernels


@register("prelu", backend="cuda")
class PReLUOp(cpu.PReLUOp):
    """``prelu``: slope per channel (the last axis) or one shared (the CPU op is NumPy ufuncs)."""

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
