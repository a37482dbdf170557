"""Joining tensors: ``add`` (residual sums) and ``concat`` (along channels, the last axis here)."""

from __future__ import annotations

import numpy as np

from ..kernels.cpu.epilogue import activation_kind, add_activation
from .base import Context, Op, register


@register("add")
class AddOp(Op):
    strided_out = True
    fuses_activation = True

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        add_activation(inputs, out, activation_kind(self.activation))

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        # Every input receives dy itself; the executor copies before it ever accumulates into one.
        return [dy if need else None for need in self.need_input_grad]


@register("concat")
class ConcatOp(Op):
    """Copies each input into its channels of ``out``, except those listed in ``written``
    (indices of inputs whose producers already wrote into their slice: an eliminated concat)."""

    strided_out = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        edges = np.cumsum([0] + [shape[-1] for shape in self.in_shapes])
        self.slices = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
        self.offsets = [int(a) for a in edges[:-1]]
        self.written: frozenset[int] = frozenset()

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        for index, (x, part) in enumerate(zip(inputs, self.slices)):
            if index not in self.written:
                out[..., part] = x

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        return [
            np.ascontiguousarray(dy[..., part]) if need else None
            for part, need in zip(self.slices, self.need_input_grad)
        ]
