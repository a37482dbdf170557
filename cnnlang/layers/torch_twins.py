"""PyTorch twins of the layers that torch lacks as one module, and the translation of conv and
pooling layers (used by the layers' ``torch_module``). Importing this module imports torch;
only tests and benchmarks do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(layer, shape: tuple[int, ...]) -> nn.Module:
    """``nn.Conv1d``/``nn.Conv2d`` with the layer's padding; asymmetric padding (``pad = same``
    with an odd total) runs ``F.pad`` before an unpadded conv."""
    rank = layer.rank
    cls = nn.Conv1d if rank == 1 else nn.Conv2d
    kernels, strides, pads, dilations = layer.geometry(shape)
    symmetric = all(a == b for a, b in pads)
    module = cls(
        shape[0], layer.filters, kernels, stride=strides, padding=tuple(a for a, _ in pads) if symmetric else 0,
        dilation=dilations, groups=layer.groups, bias=layer.bias,
    )  # fmt: skip
    return module if symmetric else PaddedConv(module, pads)


def pool(layer, shape: tuple[int, ...]) -> nn.Module:
    """``nn.MaxPool{1,2}d``/``nn.AvgPool{1,2}d`` (``ceil`` = ``ceil_mode``, ``count_pad`` =
    ``count_include_pad``), 1-D or 2-D following the input's rank."""
    kernels, strides, pads, dilations = layer.geometry(shape)
    pads = tuple(a for a, _ in pads)
    if layer.op == "maxpool":
        cls = nn.MaxPool1d if len(kernels) == 1 else nn.MaxPool2d
        return cls(kernels, strides, pads, dilation=dilations, ceil_mode=layer.ceil)
    cls = nn.AvgPool1d if len(kernels) == 1 else nn.AvgPool2d
    return cls(kernels, strides, pads, ceil_mode=layer.ceil, count_include_pad=layer.count_pad)


class PaddedConv(nn.Module):
    """A convolution with per-side padding: ``F.pad`` (zeros) and then an unpadded conv."""

    def __init__(self, conv: nn.Module, pads: tuple[tuple[int, int], ...]):
        super().__init__()
        self.conv = conv
        # F.pad lists the last axis first: (left, right, top, bottom).
        self.pad = tuple(p for pair in reversed(pads) for p in pair)

    @property
    def weight(self):
        return self.conv.weight

    @property
    def bias(self):
        return self.conv.bias

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class FullyConnected(nn.Module):
    """cnnlang's ``fc``: any input, read as flat features in C, H, W order."""

    def __init__(self, features: int, units: int, bias: bool):
        super().__init__()
        self.linear = nn.Linear(features, units, bias=bias)

    @property
    def weight(self):
        return self.linear.weight

    @property
    def bias(self):
        return self.linear.bias

    def forward(self, x):
        return self.linear(torch.flatten(x, 1))


class LRN(nn.Module):
    """``nn.LocalResponseNorm``, also for flat N x C inputs (which it rejects as they are)."""

    def __init__(self, size: int, alpha: float, beta: float, k: float):
        super().__init__()
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)

    def forward(self, x):
        if x.dim() == 2:
            return self.lrn(x.unsqueeze(-1)).squeeze(-1)
        return self.lrn(x)


class ReplayDropout(nn.Module):
    """Dropout with inverted scaling 1/(1-p) while training, identity in eval mode.

    ``mode``: ``"torch"`` (PyTorch's own random mask), ``"off"`` (identity even while training)
    or ``"replay"`` (multiply by ``self.mask`` -- a 0/1 keep mask of the input's shape -- and
    scale, so that another framework's draw can be reproduced exactly).
    """

    def __init__(self, p: float, mode: str = "torch"):
        super().__init__()
        self.p = p
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def forward(self, x):
        if not self.training or self.p == 0 or self.mode == "off":
            return x
        if self.mode == "replay":
            if self.mask is None or self.mask.shape != x.shape:
                raise RuntimeError("ReplayDropout in replay mode needs a mask of the input's shape")
            return x * (self.mask.to(x.dtype) * (1.0 / (1.0 - self.p)))
        return F.dropout(x, self.p, training=True)


class Add(nn.Module):
    def forward(self, *xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out


class Concat(nn.Module):
    def forward(self, *xs):
        return torch.cat(xs, dim=1)
