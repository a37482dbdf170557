"""Normalisation on the GPU: ``batchnorm``, ``dropout`` and ``lrn``, the CPU ops
(runtime/ops/norm.py) running the kernels of runtime/kernels/cuda/norm.py.

Dropout's mask is never stored: forward takes a key from ``ctx.rng.next_key()`` (the CUDA
backend's seeded key stream) and backward regenerates the mask from it."""

from __future__ import annotations

import numpy as np

from ...kernels.cuda import norm as cuda_kernels
from ...kernels.cuda.norm import dropout_apply
from ...kernels.cuda.reduce import chunks
from ...ops import norm as cpu
from ...ops.base import register


@register("batchnorm", backend="cuda")
class BatchNormOp(cpu.BatchNormOp):
    """``batchnorm``: batch statistics and running ones exactly as the CPU op defines them."""

    kernels = cuda_kernels
    _partial = None

    def _kernel_scratch(self, rows: int) -> tuple:
        """The float64 partial sums of the row chunks (runtime/kernels/cuda/reduce.py)."""
        self._partial = self.scratch(self._partial, (chunks(rows), 2, self._channels), np.float64)
        return (self._partial,)


@register("dropout", backend="cuda")
class DropoutOp(cpu.DropoutOp):
    """``dropout(p)``: value i kept where the counter-based uniform of (key, i) is >= p."""

    _key = 0

    def _draw(self, rng, size: int) -> None:
        self._key = rng.next_key()

    def _apply(self, a, out) -> None:
        dropout_apply(a.reshape(-1), self._key, self._p, self._scale, out.reshape(-1))


@register("lrn", backend="cuda")
class LRNOp(cpu.LRNOp):
    kernels = cuda_kernels
