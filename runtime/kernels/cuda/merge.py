"""Residual sums on the GPU: ``out = f(a + b)`` with the activation fused into the same pass (the
end of a ResNet block). Arrays are rows x C and may have any row stride, so ``out`` can be a
channel slice of a concat buffer; more than two inputs sum pairwise into ``out``, left to right
as the CPU sums them."""

from __future__ import annotations

from numba import cuda

from .activation import NONE, activate
from .launch import elementwise


@cuda.jit
def _add_activation(a, b, out, kind):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i < out.size:
        channels = out.shape[1]
        r, c = i // channels, i % channels
        zero = out.dtype.type(0)
        out[r, c] = activate(a[r, c] + b[r, c], kind, zero, zero + 1)


def add_activation(inputs: list, out, kind: int) -> None:
    """out = f(inputs[0] + inputs[1] + ...) for rows x C device arrays (``out`` may be one of the
    inputs, or strided); ``kind`` is an activation code or NONE."""
    blocks, threads = elementwise(out.size)
    last = len(inputs) - 1
    _add_activation[blocks, threads](inputs[0], inputs[1], out, kind if last == 1 else NONE)
    for index in range(2, len(inputs)):
        _add_activation[blocks, threads](out, inputs[index], out, kind if index == last else NONE)
