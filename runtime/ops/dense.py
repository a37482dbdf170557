"""Fully connected layers and flattening.

``fc`` reads its input as flat features in the user's C, H, W order, so its weight matrix is the
one PyTorch would hold after ``flatten``. Spatial inputs arrive channels-last, so they are
reordered once per batch (a copy of the activations, which is far smaller than the weights).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from ..backend import CPU
from ..kernels.cpu.activation import RELU
from ..kernels.cpu.epilogue import NONE, activation_kind, bias_activation
from ..kernels.cpu.gemm_epilogue import bind_pointwise
from ..kernels.cpu.serial import SERIAL_WORK, bind_bias_activation
from ..kernels.cpu.small_gemm import BLAS_SERIAL_BELOW, small_matmul
from ..kernels.cpu.workspace import ConvWorkspace
from .base import Context, Op, register


def flatten_user_order(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """N x ... x C (channels-last) → N x (C*...) in channels-first order."""
    n = x.shape[0]
    if x.ndim <= 2:
        flat = x.reshape(n, -1)
        if out is None:
            return flat
        np.copyto(out, flat)
        return out
    if out is None:
        out = np.empty((n, x[0].size), dtype=x.dtype)
    np.copyto(out.reshape(n, x.shape[-1], *x.shape[1:-1]), np.moveaxis(x, -1, 1))
    return out


def unflatten_user_order(flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of :func:`flatten_user_order` for per-example channels-last ``shape``."""
    n = flat.shape[0]
    if len(shape) <= 1:
        return flat.reshape(n, *shape)
    channels_first = flat.reshape(n, shape[-1], *shape[:-1])
    return np.ascontiguousarray(np.moveaxis(channels_first, 1, -1))


@register("flatten")
class FlattenOp(Op):

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        flatten_user_order(inputs[0], out)

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        x = inputs[0]
        if self.backend is CPU and x.flags.c_contiguous and (x.ndim <= 2 or x[0].size == x.shape[-1]):
            # no spatial extent (LeNet-5's 1x1x120): channels-first order is channels-last order,
            # and x's reshape is a view (of a contiguous x), so the bound copy reads each new value
            return functools.partial(np.copyto, out, x.reshape(out.shape))
        return super().bind(inputs, out, ctx)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        return [unflatten_user_order(dy, self.in_shapes[0])]


@register("fc")
class FullyConnectedOp(Op):
    strided_out = True
    fuses_activation = True

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = flatten_user_order(inputs[0])
        if not (ctx.train and self._small_matmul(x, self.params["weight"].T, out)):
            self.backend.matmul(x, self.params["weight"].T, out=out)
        if self.activation is not None:
            bias_activation(out, self.params.get("bias"), activation_kind(self.activation))
        elif "bias" in self.params:
            out += self.params["bias"]
        self._x = x

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        """Small inference work (fewer than SERIAL_WORK outputs: batch-1 classifiers) with a
        2-D input: the GEMM on fixed views, then the single-thread epilogue (the same sums).
        From BLAS_SERIAL_BELOW multiply-adds (where OpenBLAS starts its threads), an input with no
        spatial extent (after a global pool) and relu or no activation:
        pointwise.py's GEMM with the bias and relu fused, in Numba's pool (gemm_epilogue.py's
        bind_pointwise), since handing the GEMM to OpenBLAS's threads stalled on a loaded machine
        (ResNet-50's fc1 at batch 8, two threads: 22-55 ms against 1.2-1.5 ms on one thread)."""
        x = inputs[0]
        if ctx.train or self.backend is not CPU:
            return super().bind(inputs, out, ctx)
        work = out.size * x[0].size if x.ndim >= 2 and x.shape[0] else 0
        fused = self._bind_fused(x, out) if work >= BLAS_SERIAL_BELOW else None
        if fused is not None:
            return fused
        if x.ndim != 2 or out.size >= SERIAL_WORK:
            return super().bind(inputs, out, ctx)
        self._x = x
        weight_t, matmul = self.params["weight"].T, np.matmul
        epilogue = bind_bias_activation(out, self.params.get("bias"), activation_kind(self.activation))

        def run() -> None:
            matmul(x, weight_t, out=out)
            epilogue()

        return run

    def _bind_fused(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
        kind = activation_kind(self.activation)
        n = x.shape[0]
        if (kind not in (NONE, RELU) or not x.flags.c_contiguous or x[0].size != x.shape[-1]
                or x.dtype != out.dtype or out.dtype not in (np.float32, np.float64) or out.strides[1] != out.itemsize):
            return None  # (spatial inputs are reordered to channels-first order per call: the GEMM path)
        if getattr(self, "_gemm_ws", None) is None:
            self._gemm_ws = ConvWorkspace()
        self._x = x.reshape(n, -1)
        weight = np.ascontiguousarray(self.params["weight"], out.dtype)
        return bind_pointwise(self._x, weight, self.params.get("bias"), out, kind, self._gemm_ws)

    def _small_matmul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> bool:
        """out = a @ b in Numba's pool when small, on the CPU in training (small_gemm.py); False
        when not taken."""
        if self.backend is not CPU:
            return False
        if getattr(self, "_gemm_ws", None) is None:
            self._gemm_ws = ConvWorkspace()
        return small_matmul(a, b, out, self._gemm_ws)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        x = self._x
        if "weight" in self.grads and not self._small_matmul(dy.T, x, self.grads["weight"]):
            self.backend.matmul(dy.T, x, out=self.grads["weight"])
        if "bias" in self.grads:
            np.sum(dy, axis=0, out=self.grads["bias"])
        if not self.need_input_grad[0]:
            return [None]
        weight = self.params["weight"]
        dx = np.empty((dy.shape[0], weight.shape[1]), dy.dtype) if self.backend is CPU else None
        if dx is None or not self._small_matmul(dy, weight, dx):
            dx = self.backend.matmul(dy, weight)
        return [unflatten_user_order(dx, self.in_shapes[0])]
