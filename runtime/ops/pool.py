"""Pooling ops: ``maxpool``, ``avgpool`` and ``globalavgpool`` over the kernels in
runtime/kernels/cpu/pool.py. The window geometry comes from the layer type itself (``geometry``), so
the runtime and the compiler's shape rule cannot disagree. A 1-D signal N x L x C runs as the
image N x 1 x L x C (a view, no copy)."""

from __future__ import annotations

import functools
from typing import Callable

import numba
import numpy as np

from ..backend import CPU
from ..kernels.cpu import activation as activation_kernels
from ..kernels.cpu import pool as cpu_kernels
from ..kernels.cpu.activation_pool import activation_avgpool_backward, scratch_shape
from ..kernels.cpu import maxpool_pixels
from ..kernels.cpu.serial import SERIAL_WORK, avgpool_forward_serial, maxpool_values_serial
from .base import Context, Op, as_image, register, window_geometry


class _WindowPool(Op):
    """What max and average pooling share: geometry from the layer, 4-D views, dx scratch."""

    #: the module whose kernels the op runs (a device backend's op subclasses with its own)
    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        kernels, strides, pads, dilations = window_geometry(layer, in_shapes[0], out_shape)
        pads = tuple(before for before, _ in pads)  # pooling pads both sides alike
        self._kernel, self._stride, self._pad, self._dilation = kernels, strides, pads, dilations
        self._in_image = as_image(tuple(in_shapes[0]))
        self._out_image = as_image(tuple(out_shape))
        self._dx: np.ndarray | None = None

    def _small(self, x: np.ndarray, out: np.ndarray, ctx: Context) -> bool:
        """Whether a bound forward runs the single-thread kernel (runtime/kernels/cpu/serial.py):
        little work, and arrays whose 4-D views are views (a reshaped copy would be stale)."""
        return (not ctx.train and self.kernels is cpu_kernels and max(x.size, out.size) < SERIAL_WORK
                and x.flags.c_contiguous and out.flags.c_contiguous)

    def _input_grad(self, n: int) -> np.ndarray:
        self._dx = self.scratch(self._dx, (n, *self.in_shapes[0]))
        return self._dx


@register("maxpool")
class MaxPoolOp(_WindowPool):
    """``maxpool``: the forward pass records each output's arg-max (int32, per image) so that
    backward routes its gradient to exactly that input element; the inference plan's bound
    forward computes the values only."""

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._args = (*self._kernel, *self._stride, *self._pad, *self._dilation)
        self._argmax: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        self._argmax = self.scratch(self._argmax, (n, *self._out_image), np.int32)
        x4, out4 = x.reshape(n, *self._in_image), out.reshape(n, *self._out_image)
        self.kernels.maxpool_forward(x4, out4, self._argmax, *self._args)

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        """The inference plan's forward: values only, no arg-max (no backward follows a bound
        step), by the separable kernel, or per output pixel with many channels (maxpool_pixels.py);
        on one thread for small work."""
        x = inputs[0]
        if ctx.train or self.kernels is not cpu_kernels or not (x.flags.c_contiguous and out.flags.c_contiguous):
            return super().bind(inputs, out, ctx)
        n = x.shape[0]
        x4, out4 = x.reshape(n, *self._in_image), out.reshape(n, *self._out_image)
        kernel = maxpool_values_serial if self._small(x, out, ctx) else cpu_kernels.maxpool_values
        if kernel is cpu_kernels.maxpool_values and maxpool_pixels.takes(self._in_image[-1], self._out_image[-2],
                                                                           self._stride[1]):
            kernel = maxpool_pixels.maxpool_pixels  # many channels: per output pixel (maxpool_pixels.py)
        return functools.partial(kernel, x4, out4, *self._args)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        dx = self._input_grad(n)
        self.kernels.maxpool_backward(dy.reshape(n, *self._out_image), self._argmax, dx.reshape(n, *self._in_image))
        return [dx]


@register("avgpool")
class AvgPoolOp(_WindowPool):
    """``avgpool``: PyTorch's divisor, ``count_pad`` being its count_include_pad.

    With ``input_activation`` (set by the CPU training plan, cnnlang/passes/fuse_training.py: an
    activation only this pooling reads, windows that tile the image) the input is the activation's
    input: forward writes the activation's value into ``activation_out`` (its buffer, which the plan
    hands over) and pools it; backward gives the activation input's gradient in one pass."""

    #: the fused activation's name, or None
    input_activation: str | None = None
    #: where the fused activation's value goes (the plan's buffer for it)
    activation_out: np.ndarray | None = None

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._args = (*self._kernel, *self._stride, *self._pad, bool(layer.count_pad))
        self._scratch: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        if self.input_activation is not None:
            # the two kernels, one after the other: one pass measured slower on two threads (activation_pool.py)
            kind = activation_kernels.KINDS[self.input_activation]
            activation_kernels.activation_forward(x.reshape(-1), self.activation_out.reshape(-1), kind)
            x = self.activation_out
        self.kernels.avgpool_forward(x.reshape(n, *self._in_image), out.reshape(n, *self._out_image), *self._args)

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        if not self._small(inputs[0], out, ctx):
            return super().bind(inputs, out, ctx)
        n = inputs[0].shape[0]
        x4, out4 = inputs[0].reshape(n, *self._in_image), out.reshape(n, *self._out_image)
        return functools.partial(avgpool_forward_serial, x4, out4, *self._args)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        dx = self._input_grad(n)
        if self.input_activation is not None:
            y = self.activation_out.reshape(n, *self._in_image)
            self._scratch = self.scratch(self._scratch, scratch_shape(numba.get_num_threads(), self._in_image))
            activation_avgpool_backward(y, np.ascontiguousarray(dy).reshape(n, *self._out_image),
                                        dx.reshape(n, *self._in_image), activation_kernels.KINDS[self.input_activation],
                                        *self._kernel, self._scratch)
            return [dx]
        self.kernels.avgpool_backward(dy.reshape(n, *self._out_image), dx.reshape(n, *self._in_image), *self._args)
        return [dx]


@register("globalavgpool")
class GlobalAvgPoolOp(Op):
    """``globalavgpool``: the mean of each channel over all positions (H x W x C → 1 x 1 x C)."""

    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._in_image = as_image(tuple(in_shapes[0]))
        self._out_image = (1, 1, in_shapes[0][-1])
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        self.kernels.global_avgpool_forward(x.reshape(n, *self._in_image), out.reshape(n, *self._out_image))

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        n = dy.shape[0]
        self._dx = self.scratch(self._dx, (n, *self.in_shapes[0]))
        self.kernels.global_avgpool_backward(dy.reshape(n, *self._out_image), self._dx.reshape(n, *self._in_image))
        return [self._dx]
