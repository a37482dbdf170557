"""Joining tensors on the GPU: ``add`` (with its fused activation) and ``concat`` along channels,
including the inference plan's eliminated concat (inputs listed in ``written`` are already in
their slice). Both take and give channel slices of larger arrays (strided ``out``)."""

from __future__ import annotations

from ...kernels.cuda.epilogue import activation_code
from ...kernels.cuda.merge import add_activation
from ...kernels.cuda.views import channel_rows
from ...ops import merge as cpu
from ...ops.base import Context, channel_slice, register


def as_rows(array):
    """N x ... x C → rows x C; a channel slice stays a view (its rows keep their stride: numba's
    device arrays reshape only contiguous arrays, which the simulator's do not show)."""
    return channel_rows(array, tuple(array.shape)[-1])


@register("add", backend="cuda")
class AddOp(cpu.AddOp):
    def forward(self, inputs: list, out, ctx: Context) -> None:
        add_activation([as_rows(x) for x in inputs], as_rows(out), activation_code(self.activation))


@register("concat", backend="cuda")
class ConcatOp(cpu.ConcatOp):
    """Copies each input into its channels of ``out``, except those in ``written``; backward
    hands each input its channels of dy, copied out contiguous."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._grads: list = [None] * len(self.in_shapes)

    def forward(self, inputs: list, out, ctx: Context) -> None:
        for index, (x, part) in enumerate(zip(inputs, self.slices)):
            if index not in self.written:
                self.backend.copy(channel_slice(out, part.start, part.stop), x)

    def backward(self, dy) -> list:
        grads = []
        for index, (part, need) in enumerate(zip(self.slices, self.need_input_grad)):
            if not need:
                grads.append(None)
                continue
            shape = (dy.shape[0], *self.in_shapes[index])
            self._grads[index] = self.scratch(self._grads[index], shape)
            self.backend.copy(self._grads[index], channel_slice(dy, part.start, part.stop))
            grads.append(self._grads[index])
        return grads
