"""Normalisation on the GPU: ``batchnorm``, ``dropout`` and ``lrn``, the CPU ops
(runtime/ops/norm.py) running the kernels of runtime/kernels/cuda/norm.py.

Dropout's mask is never stored: forward takes a key from ``ctx.rng.next_key()`` (the CUDA
backend's seeded key stream) and backward regenerates the mask from it."""

from __future__ import annotations

import numpy as np

from ...kernels.cuda import norm as cuda_kernels
from ...kernels.cuda.norm import batchnorm_backward, batchnorm_forward, dropout_apply
from ...kernels.cuda.reduce import chunks
from ...ops import norm as cpu
from ...ops.base import Context, register


@register("batchnorm", backend="cuda")
class BatchNormOp(cpu.BatchNormOp):
    """``batchnorm``: batch statistics and running ones exactly as the CPU op defines them."""

    _partial = None

    def _scratch_partial(self, rows: int):
        self._partial = self.scratch(self._partial, (chunks(rows), 2, self._channels), np.float64)
        return self._partial

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0].reshape(-1, self._channels)
        train = bool(ctx.train)
        if train and x.shape[0] < 2:
            raise ValueError(
                f"batchnorm in training mode needs more than one value per channel, got input {inputs[0].shape}"
            )
        gamma = self.params["gamma"] if self._affine else self._ones
        beta = self.params["beta"] if self._affine else self._zeros
        batchnorm_forward(
            x, gamma, beta, self.buffers["running_mean"], self.buffers["running_var"], self._eps, self._momentum,
            train, out.reshape(-1, self._channels), self._mean, self._invstd, self._scratch_partial(x.shape[0]),
        )  # fmt: skip
        self._x, self._train = x, train

    def backward(self, dy) -> list:
        c = self._channels
        gamma = self.params["gamma"] if self._affine else self._ones
        dgamma = self.grads.get("gamma", self._dgamma)
        dbeta = self.grads.get("beta", self._dbeta)
        self._dx = self.scratch(self._dx, dy.shape)
        dx = self._dx.reshape(-1, c)
        batchnorm_backward(
            self._x, dy.reshape(-1, c), gamma, self._mean, self._invstd, self._train, dx, dgamma, dbeta,
            self._scratch_partial(self._x.shape[0]),
        )  # fmt: skip
        return [self._dx if self.need_input_grad[0] else None]


@register("dropout", backend="cuda")
class DropoutOp(cpu.DropoutOp):
    """``dropout(p)``: inverted dropout, value i kept where the counter-based uniform of
    (key, i) is >= p; the identity in eval mode."""

    _key = 0

    def forward(self, inputs: list, out, ctx: Context) -> None:
        x = inputs[0]
        self._masked = bool(ctx.train) and self._p > 0
        if not self._masked:
            if out is not x:
                self.backend.copy(out, x)
            return
        self._key = ctx.rng.next_key()
        dropout_apply(x.reshape(-1), self._key, self._p, self._scale, out.reshape(-1))

    def backward(self, dy) -> list:
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        if self._masked:
            dropout_apply(dy.reshape(-1), self._key, self._p, self._scale, self._dx.reshape(-1))
        else:
            self.backend.copy(self._dx, dy)
        return [self._dx]


@register("lrn", backend="cuda")
class LRNOp(cpu.LRNOp):
    kernels = cuda_kernels
