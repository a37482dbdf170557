"""Convolution: ``conv(filters, kernel, stride = 1, pad = 0, dilation = 1, groups = 1, bias = true)``
and its 1-D twin ``conv1d`` over C x L signals."""

from __future__ import annotations

from dataclasses import dataclass

from .base import (
    ArgumentError,
    LayerType,
    Shape,
    ShapeError,
    arg,
    count,
    expect_rank,
    array_dims,
    array_values,
    flag,
    format_shape,
    numel,
    padding,
    size,
)
from ..text import plural
from .window import (
    as_image_batch,
    as_image_geometry,
    gather_windows,
    per_axis,
    resolve_padding,
    scatter_windows,
    window_output,
)


@dataclass(frozen=True)
class Conv(LayerType):
    op = "conv"
    aliases = ("conv2d",)
    category = "anchor"
    summary = "2-D convolution; output depth = number of filters"
    rank = 2

    filters: int = arg(count, positional=True, doc="number of filters, the output depth")
    kernel: tuple[int, ...] = arg(size, positional=True, doc="kernel size, e.g. 3x3")
    stride: tuple[int, ...] = arg(size, (1,))
    pad: tuple[int, ...] | str = arg(padding, (0,))
    dilation: tuple[int, ...] = arg(size, (1,))
    groups: int = arg(count, 1)
    bias: bool = arg(flag, True)
    frozen: bool = arg(flag, False, doc="fixed weights that training does not change")
    weights: tuple | None = arg(
        array_values, None, doc="the kernel's values, written out; such a layer is fixed (frozen)"
    )
    notes = (
        "`pad` is a size, `same` (keeps ⌈W/S⌉) or `valid`; `weights = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]` "
        "writes a fixed kernel (see [runtime.md](runtime.md))"
    )

    def validate(self) -> None:
        if self.weights is not None and len(array_dims(self.weights)) not in (self.rank, self.rank + 2):
            raise ArgumentError(
                f"{self.op}: weights must be one {self.rank}-D kernel shared by every filter and channel, "
                f"or {self.rank + 2}-D (filters x channels per group x kernel), got "
                f"{len(array_dims(self.weights))}-D values"
            )
        if self.filters % self.groups:
            raise ArgumentError(f"{self.op}: {self.filters} filters do not split into {self.groups} groups")
        for name in ("kernel", "stride", "dilation"):
            if len(getattr(self, name)) not in (1, self.rank):
                raise ArgumentError(f"{self.op}: {name} needs 1 or {self.rank} sizes")
        if isinstance(self.pad, tuple) and len(self.pad) not in (1, self.rank):
            raise ArgumentError(f"{self.op}: pad needs 1 or {self.rank} sizes")

    # -- geometry
    def geometry(self, shape: Shape):
        """Per spatial axis: kernel sizes, strides, (before, after) paddings, dilations."""
        expect_rank(self.op, shape, (self.rank + 1,), "; use fc for flat features" if len(shape) == 1 else "")
        kernels = per_axis("kernel", self.kernel, self.rank)
        strides = per_axis("stride", self.stride, self.rank)
        dilations = per_axis("dilation", self.dilation, self.rank)
        effective = tuple(d * (k - 1) + 1 for k, d in zip(kernels, dilations))
        pads = resolve_padding(self.pad, shape[1:], effective, strides)
        return kernels, strides, pads, dilations

    def _check_channels(self, shape: Shape) -> None:
        if shape[0] % self.groups:
            raise ShapeError(f"{shape[0]} input channels do not split into {self.groups} groups")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        kernels, strides, pads, dilations = self.geometry(shape)
        self._check_channels(shape)
        out, _ = window_output(self.op, shape, self.filters, kernels, strides, pads, dilations)
        if self.weights is not None:
            given = array_dims(self.weights)
            full = (self.filters, shape[0] // self.groups, *kernels)
            if given not in (full, tuple(kernels)):
                raise ShapeError(
                    f"the written weights are {format_shape(given)}, but this layer's kernel is "
                    f"{format_shape(kernels)} (all weights: {format_shape(full)})"
                )
        return out

    def fixed_weight(self, shape: Shape):
        """The written kernel as a full weight array (filters x channels/groups x kernel), or None."""
        if self.weights is None:
            return None
        import numpy as np

        kernels = per_axis("kernel", self.kernel, self.rank)
        full = (self.filters, shape[0] // self.groups, *kernels)
        return np.broadcast_to(np.array(self.weights, dtype=np.float64), full).copy()

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        kernels, strides, pads, dilations = self.geometry(inputs[0])
        _, formulas = window_output(self.op, inputs[0], self.filters, kernels, strides, pads, dilations)
        return "; ".join(formulas + [f"C = {plural(self.filters, 'filter')}"])

    def padding_of(self, shape: Shape) -> tuple[tuple[int, int], ...]:
        return self.geometry(shape)[2]

    #: The one algorithm besides im2col + GEMM (node attribute ``algorithm``).
    WINOGRAD = "winograd"

    def why_not_winograd(self, shape: Shape) -> str:
        """Why this conv cannot run as Winograd F(2x2, 3x3) on inputs of ``shape`` ("" when it
        can): it needs a 2-D 3x3 kernel, stride 1, dilation 1 and one group (any padding)."""
        if self.rank != 2:
            return f"Winograd is implemented for 2-D convolutions only, not {self.op}"
        kernels, strides, _, dilations = self.geometry(shape)
        for name, values, wanted in (("kernel", kernels, (3, 3)), ("stride", strides, (1, 1)),
                                     ("dilation", dilations, (1, 1))):  # fmt: skip
            if tuple(values) != wanted:
                shown = "3x3" if name == "kernel" else "1"
                return f"{name} {'x'.join(map(str, values))}, not {shown}"
        if self.groups != 1:
            return f"{self.groups} groups, not 1"
        return ""

    #: fuse-depthwise: a streamed conv's channels must be a multiple of this, the widest vector of
    #: any float type the CPU's fused kernel runs (runtime/kernels/cpu/depthwise_pointwise.py).
    STREAMED_CHANNEL_MULTIPLE = 16

    def why_not_streamed(self, shape: Shape) -> str:
        """Why this conv, on inputs of ``shape``, cannot be the depthwise conv that fuse-depthwise
        computes inside the 1x1 conv reading it ("" when it can): a 2-D depthwise 3x3 conv (groups
        = channels = filters) over a multiple of ``STREAMED_CHANNEL_MULTIPLE`` channels."""
        channels = shape[0]
        if self.rank != 2 or not 1 < self.groups == channels:
            return "it is not a 2-D depthwise conv (groups = channels)"
        kernels = self.geometry(shape)[0]
        if tuple(kernels) != (3, 3):
            return f"its kernel is {'x'.join(map(str, kernels))}, not 3x3"
        if self.filters != channels:
            return f"{self.filters} filters on {channels} channels (a channel multiplier other than 1)"
        if channels % self.STREAMED_CHANNEL_MULTIPLE:
            return f"{channels} channels, not a multiple of {self.STREAMED_CHANNEL_MULTIPLE}"
        return ""

    def why_not_streaming(self, shape: Shape) -> str:
        """Why this conv, on inputs of ``shape``, cannot compute a streamed depthwise conv that it
        reads ("" when it can; a reason reads after the conv's name): it must be pointwise (2-D 1x1,
        stride 1, no padding, one group)."""
        kernels, strides, pads, dilations = self.geometry(shape)
        if (self.rank != 2 or set(kernels) != {1} or set(strides) != {1} or any(p for pair in pads for p in pair)
                or set(dilations) != {1}):
            return "is not pointwise (1x1, stride 1, no padding)"
        if self.groups != 1:
            return f"has {self.groups} groups"
        return ""

    # -- costs
    def _fan_in(self, shape: Shape) -> int:
        return shape[0] // self.groups * numel(per_axis("kernel", self.kernel, self.rank))

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        kernels = per_axis("kernel", self.kernel, self.rank)
        shapes = {"weight": (self.filters, inputs[0][0] // self.groups, *kernels)}
        if self.bias:
            shapes["bias"] = (self.filters,)
        return shapes

    @property
    def trainable(self) -> bool:
        return not (self.frozen or self.weights is not None)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return numel(output) * self._fan_in(inputs[0])

    def window(self, inputs: list[Shape]):
        kernels, strides, _, dilations = self.geometry(inputs[0])
        return tuple(d * (k - 1) + 1 for k, d in zip(kernels, dilations)), strides

    # -- reference: y[n, o] = sum over the group's channels c and taps of x[n, c, window] * w[o, c]
    def _windows(self, x):
        """x's windows as N x G x C/G x Ho x Wo x KH x KW, and the 2-D geometry."""
        geometry = as_image_geometry(self.geometry(x.shape[1:]))
        image = as_image_batch(x)
        outs = self.output_shape([x.shape[1:]])[1:]
        windows = gather_windows(image, geometry, (1, *outs) if len(outs) == 1 else outs)
        n, c = image.shape[:2]
        return windows.reshape(n, self.groups, c // self.groups, *windows.shape[2:]), geometry, image.shape

    def _grouped_weight(self, weight):
        o, cg = weight.shape[:2]
        return weight.reshape(self.groups, o // self.groups, cg, *([1] if self.rank == 1 else []), *weight.shape[2:])

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        windows, _, _ = self._windows(inputs[0])
        y = np.einsum("ngchwab,gocab->ngohw", windows, self._grouped_weight(params["weight"]))
        y = y.reshape(y.shape[0], self.filters, *y.shape[3:])
        if "bias" in params:
            y = y + params["bias"][None, :, None, None]
        return y.reshape(y.shape[0], self.filters, *self.output_shape([inputs[0].shape[1:]])[1:])

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        windows, geometry, image_shape = self._windows(x)
        n, g = x.shape[0], self.groups
        dy = as_image_batch(dy).reshape(n, g, self.filters // g, *windows.shape[3:5])
        weight = self._grouped_weight(params["weight"])
        dwindows = np.einsum("ngohw,gocab->ngchwab", dy, weight).reshape(n, x.shape[1], *windows.shape[3:])
        dx = scatter_windows(dwindows, image_shape, geometry).reshape(x.shape)
        grads = {"weight": np.einsum("ngohw,ngchwab->gocab", dy, windows).reshape(params["weight"].shape)}
        if "bias" in params:
            grads["bias"] = dy.sum(axis=(0, 3, 4)).reshape(-1)
        return [dx], grads

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.conv(self, inputs[0])

    def label(self) -> str:
        text = f"{self.op} {'x'.join(map(str, per_axis('kernel', self.kernel, self.rank)))}, {self.filters}"
        if max(self.stride) > 1:
            text += f", /{'x'.join(map(str, self.stride))}"
        if max(self.dilation) > 1:
            text += f", dil {'x'.join(map(str, self.dilation))}"
        if self.groups > 1:
            text += f", groups {self.groups}"
        return text


@dataclass(frozen=True)
class Conv1d(Conv):
    op = "conv1d"
    aliases = ()
    summary = "1-D convolution over a C x L signal"
    notes = "as `conv`"
    rank = 1

