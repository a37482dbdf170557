"""Normalisation: ``batchnorm(eps = 1e-5, momentum = 0.1, affine = true)``,
``lrn(size = 5, alpha = 1e-4, beta = 0.75, k = 2)`` (positional, as PyTorch's
LocalResponseNorm) and ``dropout(p = 0.5)``."""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType, Shape, arg, count, flag, fraction, positive_real, probability, real


@dataclass(frozen=True)
class BatchNorm(LayerType):
    op = "batchnorm"
    aliases = ("bn",)
    category = "elementwise"
    summary = "normalise each channel by batch statistics, then scale (gamma) and shift (beta)"
    notes = "γ, β are parameters; running mean and variance are buffers"
    weight_init_before = "look-through"
    torch_names = {"gamma": "weight", "beta": "bias"}

    eps: float = arg(positive_real, 1e-5)
    momentum: float = arg(fraction, 0.1, doc="weight of the new batch in the running averages")
    affine: bool = arg(flag, True, doc="learn gamma and beta")

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        channels = inputs[0][0]
        return {"gamma": (channels,), "beta": (channels,)} if self.affine else {}

    def buffer_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        channels = inputs[0][0]
        # Running statistics are state, not parameters: no gradient reaches them.
        return {"running_mean": (channels,), "running_var": (channels,)}

    # -- reference: x_hat = (x - mean) / sqrt(var + eps) per channel, y = gamma x_hat + beta;
    # training uses the batch's mean and biased variance, eval the running ones
    def _statistics(self, x, buffers, train):
        axes = (0, *range(2, x.ndim))
        if train:
            return x.mean(axis=axes), x.var(axis=axes)
        return buffers["running_mean"], buffers["running_var"]

    def _per_channel(self, x, values):
        return values.reshape(1, -1, *[1] * (x.ndim - 2))

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        x = inputs[0]
        mean, var = self._statistics(x, buffers, train)
        x_hat = (x - self._per_channel(x, mean)) / np.sqrt(self._per_channel(x, var) + self.eps)
        if not self.affine:
            return x_hat
        return self._per_channel(x, params["gamma"]) * x_hat + self._per_channel(x, params["beta"])

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        axes = (0, *range(2, x.ndim))
        mean, var = self._statistics(x, buffers, train)
        inv_std = 1 / np.sqrt(self._per_channel(x, var) + self.eps)
        x_hat = (x - self._per_channel(x, mean)) * inv_std
        gamma = self._per_channel(x, params["gamma"]) if self.affine else 1.0
        dx_hat = dy * gamma
        if train:  # the batch statistics depend on x too
            count = x.size // x.shape[1]
            dx_hat = dx_hat - dx_hat.mean(axis=axes, keepdims=True)
            dx_hat = dx_hat - x_hat * (dy * gamma * x_hat).sum(axis=axes, keepdims=True) / count
        grads = {"gamma": (dy * x_hat).sum(axis=axes), "beta": dy.sum(axis=axes)} if self.affine else {}
        return [dx_hat * inv_std], grads

    def torch_module(self, inputs):
        from torch import nn

        cls = nn.BatchNorm2d if len(inputs[0]) == 3 else nn.BatchNorm1d
        return cls(inputs[0][0], eps=self.eps, momentum=self.momentum, affine=self.affine)


@dataclass(frozen=True)
class LocalResponseNorm(LayerType):
    op = "lrn"
    category = "opaque"
    summary = "local response normalisation across neighbouring channels (AlexNet)"
    notes = "as PyTorch's LocalResponseNorm"
    weight_init_before = "look-through"

    size: int = arg(count, 5, positional=True, doc="number of neighbouring channels")
    alpha: float = arg(real, 1e-4, positional=True)
    beta: float = arg(real, 0.75, positional=True)
    k: float = arg(real, 2.0, positional=True)

    # -- reference: b_c = a_c / d_c^beta, d_c = k + alpha/size * sum of a_j^2 over the channels j
    # from c - size//2 to c + (size-1)//2 (those that exist)
    def _window(self, channels: int, c: int) -> slice:
        return slice(max(c - self.size // 2, 0), min(c + (self.size - 1) // 2 + 1, channels))

    def _denominator(self, x):
        import numpy as np

        squares = x**2
        sums = np.stack([squares[:, self._window(x.shape[1], c)].sum(axis=1) for c in range(x.shape[1])], axis=1)
        return self.k + self.alpha / self.size * sums

    def forward_reference(self, inputs, params, buffers, train=False):
        x = inputs[0]
        return x / self._denominator(x) ** self.beta

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        d = self._denominator(x)
        # d_j depends on x_i for every j whose window holds i.
        through = dy * x * d ** (-self.beta - 1)
        channels = x.shape[1]
        spread = np.zeros_like(x)
        for j in range(channels):
            spread[:, self._window(channels, j)] += through[:, j : j + 1]
        dx = dy * d**-self.beta - 2 * self.alpha * self.beta / self.size * x * spread
        return [dx], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.LRN(self.size, self.alpha, self.beta, self.k)


@dataclass(frozen=True)
class Dropout(LayerType):
    op = "dropout"
    category = "elementwise"
    summary = "zero each value with probability p while training"
    weight_init_before = "look-through"

    p: float = arg(probability, 0.5, positional=True)

    # -- reference: the identity in eval mode (the random mask of training is the kernels' and
    # PyTorch's to draw; the op tests check it)
    def forward_reference(self, inputs, params, buffers, train=False):
        if train:
            raise NotImplementedError("dropout's reference is for eval mode: training draws a random mask")
        return inputs[0].copy()

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        return [self.forward_reference([dy], params, buffers, train)], {}

    def torch_module(self, inputs):
        from . import torch_twins

        return torch_twins.ReplayDropout(self.p)

    def label(self) -> str:
        return f"dropout {self.p:g}"
