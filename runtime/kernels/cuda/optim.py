"""Optimiser updates on the GPU: one fused element-wise kernel per parameter and step.

The arithmetic is cnnlang/train/optim.py's (PyTorch's formulas), in the same order, so a GPU
step and a CPU step differ only by rounding (the GPU may contract a multiply and an add into one
fused multiply-add). The hyper-parameters are cast to the parameter's dtype by the launchers, so
a float32 network updates in float32 as on the CPU, not in float64.

Each kernel walks its arrays with a grid-stride loop and reads and writes every element once:
the update is memory-bound, and one pass over (p, g, slots) is the least traffic there is.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

THREADS = 256
#: Enough blocks to fill a large GPU; the grid-stride loop covers the rest.
MAX_BLOCKS = 1024


def _launch(size: int) -> tuple[int, int]:
    threads = min(THREADS, max(32, -(-size // 32) * 32))
    return min(MAX_BLOCKS, max(1, -(-size // threads))), threads


@cuda.jit
def _sgd(p, g, buf, lr, momentum, weight_decay, nesterov):  # pragma: no cover - device code
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        d = g[i] + weight_decay * p[i] if weight_decay != 0 else g[i]
        if momentum != 0:
            b = momentum * buf[i] + d
            buf[i] = b
            d = d + momentum * b if nesterov else b
        p[i] -= lr * d


@cuda.jit
def _adam(p, g, m, v, decay, l2, beta1, rest1, beta2, rest2, eps, step_size, bias2_root):  # pragma: no cover - device code
    for i in range(cuda.grid(1), p.size, cuda.gridsize(1)):
        q = p[i] * decay if decay != 1 else p[i]
        d = g[i] + l2 * q if l2 != 0 else g[i]
        mi = beta1 * m[i] + rest1 * d
        vi = beta2 * v[i] + d * d * rest2
        m[i] = mi
        v[i] = vi
        p[i] = q - mi / (math.sqrt(vi) / bias2_root + eps) * step_size


def sgd_step(p, g, buf, lr: float, momentum: float, weight_decay: float, nesterov: bool) -> None:
    """One torch.optim.SGD step (dampening 0) of the flat device arrays ``p`` from ``g``;
    ``buf`` is the momentum slot (any array when momentum is 0: it is not touched)."""
    scalar = np.dtype(p.dtype).type
    blocks, threads = _launch(p.size)
    _sgd[blocks, threads](p, g, buf, scalar(lr), scalar(momentum), scalar(weight_decay), bool(nesterov))


def adam_step(p, g, m, v, step: int, lr: float, betas: tuple[float, float], eps: float,
              weight_decay: float, decoupled: bool) -> None:
    """Step ``step`` (1-based) of torch.optim.Adam, or AdamW when ``decoupled``, of the flat
    device arrays ``p`` from ``g``, with the moment slots ``m`` and ``v``."""
    scalar = np.dtype(p.dtype).type
    beta1, beta2 = betas
    # Computed in float64 and rounded once, as the CPU's NumPy expressions with Python floats are.
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    l2 = 0.0 if decoupled else weight_decay
    step_size = lr / (1.0 - beta1 ** step)
    bias2_root = math.sqrt(1.0 - beta2 ** step)
    blocks, threads = _launch(p.size)
    _adam[blocks, threads](p, g, m, v, *(scalar(x) for x in (decay, l2, beta1, 1.0 - beta1, beta2, 1.0 - beta2, eps,
                                                           step_size, bias2_root)))
