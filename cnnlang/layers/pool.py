"""Pooling: ``maxpool(kernel, stride = kernel, pad = 0, ceil = false)``, ``avgpool(...)`` and
``globalavgpool``. The kernel may be 1-D or 2-D; it follows the input's spatial rank."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ArgumentError, LayerType, Shape, ShapeError, arg, expect_rank, flag, format_shape, numel, offsets, size
from .window import as_image_batch, as_image_geometry, gather_windows, per_axis, scatter_windows, window_output


@dataclass(frozen=True)
class _Pool(LayerType):
    """What max and average pooling share: the window, its stride and padding, ceil mode."""

    category = "reduction"
    weight_init_before = "look-through"
    notes = "1-D or 2-D, following the input"

    kernel: tuple[int, ...] = arg(size, positional=True, doc="window size, e.g. 2x2")
    stride: tuple[int, ...] | None = arg(size, None, doc="defaults to the kernel size", shown="kernel")
    pad: tuple[int, ...] = arg(offsets, (0,))
    ceil: bool = arg(flag, False, doc="round the output size up, as Caffe does")

    @property
    def dilations(self) -> tuple[int, ...]:
        return (1,)

    def validate(self) -> None:
        for name in ("kernel", "stride", "pad"):
            value = getattr(self, name)
            if value is not None and len(value) > 2:
                raise ArgumentError(f"{self.op}: {name} needs 1 or 2 sizes")

    def geometry(self, shape: Shape):
        """Per spatial axis: kernel sizes, strides, (before, after) paddings, dilations."""
        expect_rank(self.op, shape, (2, 3))
        rank = len(shape) - 1
        kernels = per_axis("kernel", self.kernel, rank)
        strides = per_axis("stride", self.stride or self.kernel, rank)
        dilations = per_axis("dilation", self.dilations, rank)
        pads = per_axis("pad", self.pad, rank)
        for p, k in zip(pads, kernels):
            # Padding past half a window would make windows that see only padding.
            if p > k // 2:
                raise ShapeError(f"pad {p} is more than half the {k}-wide window")
        return kernels, strides, tuple((p, p) for p in pads), dilations

    def output_shape(self, inputs: list[Shape]) -> Shape:
        kernels, strides, pads, dilations = self.geometry(inputs[0])
        out, _ = window_output(self.op, inputs[0], inputs[0][0], kernels, strides, pads, dilations, self.ceil)
        return out

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        kernels, strides, pads, dilations = self.geometry(inputs[0])
        _, formulas = window_output(self.op, inputs[0], inputs[0][0], kernels, strides, pads, dilations, self.ceil)
        return "; ".join(formulas + [f"C = {inputs[0][0]} (pooling keeps the depth)"])

    def padding_of(self, shape: Shape) -> tuple[tuple[int, int], ...]:
        return self.geometry(shape)[2]

    def window(self, inputs: list[Shape]):
        kernels, strides, _, dilations = self.geometry(inputs[0])
        return tuple(d * (k - 1) + 1 for k, d in zip(kernels, dilations)), strides

    def _windows(self, x, fill_pad: float, fill_beyond: float):
        """Every window of x (N x C x ...) as N x C x Ho x Wo x KH x KW, and the 2-D geometry."""
        geometry = as_image_geometry(self.geometry(x.shape[1:]))
        outs = self.output_shape([x.shape[1:]])[1:]
        outs = (1, *outs) if len(outs) == 1 else outs
        return gather_windows(as_image_batch(x), geometry, outs, fill_pad, fill_beyond), geometry

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.pool(self, inputs[0])

    def label(self) -> str:
        text = f"{self.op} {'x'.join(map(str, self.kernel))}"
        stride = self.stride or self.kernel
        if max(stride) > 1:
            text += f", /{'x'.join(map(str, stride))}"
        if max(self.pad) > 0:
            text += f", pad {'x'.join(map(str, self.pad))}"
        if self.ceil:
            text += ", ceil"
        return text


@dataclass(frozen=True)
class MaxPool(_Pool):
    op = "maxpool"
    summary = "max over each window; gradients go to the arg-max"

    dilation: tuple[int, ...] = arg(size, (1,))

    @property
    def dilations(self) -> tuple[int, ...]:
        return self.dilation

    def validate(self) -> None:
        super().validate()
        if len(self.dilation) > 2:
            raise ArgumentError(f"{self.op}: dilation needs 1 or 2 sizes")

    # -- reference: the largest value of each window; its gradient goes to that one input
    def forward_reference(self, inputs, params, buffers, train=False):
        x = inputs[0]
        windows, _ = self._windows(x, -float("inf"), -float("inf"))
        return windows.max(axis=(-2, -1)).reshape(x.shape[0], *self.output_shape([x.shape[1:]]))

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        windows, geometry = self._windows(x, -float("inf"), -float("inf"))
        flat = windows.reshape(*windows.shape[:4], -1)
        first_max = np.argmax(flat, axis=-1)[..., None]  # ties: the first in the window, as the kernels
        routed = np.zeros_like(flat)
        np.put_along_axis(routed, first_max, as_image_batch(dy)[..., None], axis=-1)
        image = as_image_batch(x).shape
        return [scatter_windows(routed.reshape(windows.shape), image, geometry).reshape(x.shape)], {}


@dataclass(frozen=True)
class AvgPool(_Pool):
    op = "avgpool"
    summary = "mean over each window"

    count_pad: bool = arg(flag, True, doc="count padded zeros in the mean (PyTorch's default)")

    # -- reference: each window's sum over the number of positions counted (padding counted or
    # not; positions past the padding, where a ceil-mode window hangs over, never are)
    def _counts(self, x):
        import numpy as np

        counts, _ = self._windows(np.ones_like(x), 1.0 if self.count_pad else 0.0, 0.0)
        return counts.sum(axis=(-2, -1))

    def forward_reference(self, inputs, params, buffers, train=False):
        x = inputs[0]
        windows, _ = self._windows(x, 0.0, 0.0)
        mean = windows.sum(axis=(-2, -1)) / self._counts(x)
        return mean.reshape(x.shape[0], *self.output_shape([x.shape[1:]]))

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        windows, geometry = self._windows(x, 0.0, 0.0)
        share = as_image_batch(dy) / self._counts(x)
        spread = np.broadcast_to(share[..., None, None], windows.shape)
        return [scatter_windows(spread, as_image_batch(x).shape, geometry).reshape(x.shape)], {}


@dataclass(frozen=True)
class GlobalAvgPool(LayerType):
    op = "globalavgpool"
    aliases = ("gap", "global_avgpool")
    category = "reduction"
    weight_init_before = "look-through"
    summary = "mean over all positions: C x H x W -> C x 1 x 1"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        expect_rank(self.op, inputs[0], (2, 3))
        return (inputs[0][0],) + (1,) * (len(inputs[0]) - 1)

    def window(self, inputs: list[Shape]):
        return "global"

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        return f"mean of each of the {inputs[0][0]} channels over its {format_shape(inputs[0][1:])} positions"

    def forward_reference(self, inputs, params, buffers, train=False):
        x = inputs[0]
        return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        return [np.broadcast_to(dy / numel(x.shape[2:]), x.shape).copy()], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.GlobalAvgPool()
