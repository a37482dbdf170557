"""Joining tensors: ``add`` (residual sums) and ``concat`` (along channels, the last axis here).

``add`` may carry a relu (``activation``): optimised inference sets it (fuse-add-relu), and so
does training on the CPU (cnnlang/passes/fuse_training.py); backward then masks dy by the
saved output, once for all inputs."""

from __future__ import annotations

import numpy as np

from ..kernels.cpu.activation import RELU, activation_backward
from ..kernels.cpu.epilogue import activation_kind, add_activation
from .base import Context, Op, register


@register("add")
class AddOp(Op):
    strided_out = True
    fuses_activation = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._y: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        add_activation(inputs, out, activation_kind(self.activation))
        self._y = out

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if self.activation is None:
            # Every input receives dy itself; the plan never writes into a gradient it was handed.
            return [dy if need else None for need in self.need_input_grad]
        if self.activation != "relu":
            raise NotImplementedError(f"add backward through {self.activation}")
        # relu's gradient, once, shared by the inputs (the caller never writes into it).
        self._dx = self.scratch(self._dx, dy.shape)
        activation_backward(self._y.reshape(-1), dy.reshape(-1), self._dx.reshape(-1), RELU)
        return [self._dx if need else None for need in self.need_input_grad]


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
