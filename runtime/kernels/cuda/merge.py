"""Residual sums on the GPU: ``out = f(a + b)`` with the activation fused into the same pass (the
end of a ResNet block). Arrays are rows x C and may have any row stride, so ``out`` can be a
channel slice of a concat buffer; more than two inputs sum pairwise into ``out``, left to right
as the CPU sums them."""

from __future__ import annotations

import functools

from numba import cuda

from .epilogue import NONE, activation_function
from .launch import elementwise


@functools.cache
def _add_kernel(dtype: str):
    activate = activation_function(dtype)

    @cuda.jit
    def add(a, b, out, code):  # pragma: no cover - device code
        i = cuda.grid(1)
        if i < out.size:
            channels = out.shape[1]
            r, c = i // channels, i % channels
            out[r, c] = activate(a[r, c] + b[r, c], code)

    return add


def add_activation(inputs: list, out, code: int) -> None:
    """out = f(inputs[0] + inputs[1] + ...) for rows x C device arrays (``out`` may be one of the
    inputs, or strided); ``code`` an activation code of runtime/kernels/cuda/epilogue.py."""
    blocks, threads = elementwise(out.size)
    add = _add_kernel(out.dtype.char)[blocks, threads]
    last = len(inputs) - 1
    add(inputs[0], inputs[1], out, code if last == 1 else NONE)
    for index in range(2, len(inputs)):
        add(out, inputs[index], out, code if index == last else NONE)
