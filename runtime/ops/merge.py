"""Joining tensors: ``add`` (residual sums) and ``concat`` (along channels, the last axis here)."""

from __future__ import annotations

import numpy as np

from .base import Context, Op


class AddOp(Op):
    ops = ("add",)

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        np.add(inputs[0], inputs[1], out=out)
        for extra in inputs[2:]:
            out += extra

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        # Every input receives dy itself; the executor copies before it ever accumulates into one.
        return [dy if need else None for need in self.need_input_grad]


class ConcatOp(Op):
    ops = ("concat",)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        edges = np.cumsum([0] + [shape[-1] for shape in self.in_shapes])
        self.slices = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        for x, part in zip(inputs, self.slices):
            out[..., part] = x

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        return [
            np.ascontiguousarray(dy[..., part]) if need else None
            for part, need in zip(self.slices, self.need_input_grad)
        ]
