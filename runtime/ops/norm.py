"""Normalisation ops: ``batchnorm``, ``dropout`` and ``lrn`` (kernels in runtime/kernels/cpu/norm.py).

All three see the input as rows x C, the channel axis last (for a flat N x F input the F
features are the channels, as in PyTorch's BatchNorm1d)."""

from __future__ import annotations

import numpy as np

from ..backend import CPU
from ..kernels.cpu import norm as cpu_kernels
from ..kernels.cpu.norm import dropout_apply
from .base import Context, Op, register


@register("batchnorm")
class BatchNormOp(Op):
    """``batchnorm``: params gamma, beta (when affine), buffers running_mean, running_var.

    Training mode normalises by the batch statistics (biased variance) and moves the running
    ones (PyTorch's momentum convention, unbiased variance); eval mode uses the running ones.
    Backward goes through the batch statistics after a training forward, and is the plain
    per-channel affine map after an eval forward.

    With ``activation`` "relu" (set by the CPU training plan, cnnlang/passes/fuse_training.py)
    the output is max(batchnorm(x), 0) and backward takes that output's gradient: one pass
    fewer each way than a separate relu. With a second input (the same plan's fusion of a
    residual add after it: a ResNet block's last batchnorm), the output is batchnorm(x) + skip,
    then the relu, and backward gives the skip its gradient too.
    """

    #: the module whose kernels the op runs (a device backend's op subclasses with its own)
    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        channels = in_shapes[0][-1]
        self._channels = channels
        self._eps, self._momentum = float(layer.eps), float(layer.momentum)
        self._affine = bool(layer.affine)
        # Without affine: gamma = 1 and beta = 0, and their gradients go to scratch.
        self._ones = self.backend.ones((channels,), self.dtype)
        self._zeros = self.backend.zeros((channels,), self.dtype)
        self._dgamma = self.backend.empty((channels,), self.dtype)
        self._dbeta = self.backend.empty((channels,), self.dtype)
        self._mean = self.backend.empty((channels,), self.dtype)
        self._invstd = self.backend.empty((channels,), self.dtype)
        self._x: np.ndarray | None = None
        self._train = False
        self._dx: np.ndarray | None = None
        self._residual = len(in_shapes) == 2
        if self._residual:
            self.grad_order = (1, 0)  # the skip's first: the add's backward ran before this one's
        self._y: np.ndarray | None = None  # the output, with a skip and a relu: backward's mask
        self._dz: np.ndarray | None = None  # the skip's gradient, with a skip and a relu

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = inputs[0].reshape(-1, self._channels)
        train = bool(ctx.train)
        if train and x.shape[0] < 2:
            raise ValueError(
                f"batchnorm in training mode needs more than one value per channel, got input {inputs[0].shape}"
            )
        gamma = self.params["gamma"] if self._affine else self._ones
        beta = self.params["beta"] if self._affine else self._zeros
        self.kernels.batchnorm_forward(
            x, gamma, beta, self.buffers["running_mean"], self.buffers["running_var"], self._eps, self._momentum,
            train, out.reshape(-1, self._channels), self._mean, self._invstd, *self._kernel_scratch(x.shape[0]),
            **self._fused(beta), **self._skip(inputs),
        )  # fmt: skip
        self._x, self._train = x, train
        self._y = out if self._residual else None

    def _kernel_scratch(self, rows: int) -> tuple:
        """Scratch arrays the kernels take last: none on the CPU."""
        return ()

    def _fused(self, beta: np.ndarray, backward: bool = False) -> dict:
        """The keywords that fuse the relu after the batchnorm (the CPU kernels'); none without.
        After a skip the backward masks by the saved output instead (:meth:`_skip_grad`)."""
        if self.activation is None:
            return {}
        if self.activation != "relu":
            raise NotImplementedError(f"batchnorm with a fused {self.activation}")
        if self._residual:
            return {} if backward else {"relu": True}
        return {"relu": True, "beta": beta} if backward else {"relu": True}

    def _skip(self, inputs: list[np.ndarray]) -> dict:
        """The keyword that adds the skip (the second input) before the relu; none without."""
        return {"skip": inputs[1].reshape(-1, self._channels)} if self._residual else {}

    def _skip_grad(self, dy: np.ndarray) -> dict:
        """The keywords that mask dy by the saved output into the skip's gradient (a skip and a relu)."""
        if not (self._residual and self.activation):
            return {}
        self._dz = self.scratch(self._dz, dy.shape)
        return {"y": self._y.reshape(-1, self._channels), "dz": self._dz.reshape(-1, self._channels)}

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        c = self._channels
        gamma = self.params["gamma"] if self._affine else self._ones
        beta = self.params["beta"] if self._affine else self._zeros
        dgamma = self.grads.get("gamma", self._dgamma)
        dbeta = self.grads.get("beta", self._dbeta)
        self._dx = self.scratch(self._dx, dy.shape)
        dx = self._dx.reshape(-1, c)
        masks = self._skip_grad(dy)
        self.kernels.batchnorm_backward(
            self._x, dy.reshape(-1, c), gamma, self._mean, self._invstd, self._train, dx, dgamma, dbeta,
            *self._kernel_scratch(self._x.shape[0]), **self._fused(beta, backward=True), **masks,
        )  # fmt: skip
        grads = [self._dx if self.need_input_grad[0] else None]
        if self._residual:
            # the skip's gradient: dy itself without a relu (the plan never writes into it), else dz
            grads.append((self._dz if masks else dy) if self.need_input_grad[1] else None)
        return grads


@register("dropout")
class DropoutOp(Op):
    """``dropout(p)``: inverted dropout. While training, each value is kept with probability
    1 - p and scaled by 1/(1 - p); the mask is drawn from ``ctx.rng`` (float64 uniforms, kept
    if >= p, so one seed gives the same mask in float32 and float64). Identity in eval mode.

    How the mask is drawn and applied is :meth:`_draw` and :meth:`_apply` (a device backend
    draws differently)."""

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._p = float(layer.p)
        self._scale = 1.0 / (1.0 - self._p)
        self._uniform: np.ndarray | None = None
        self._masked = False
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        x = inputs[0]
        self._masked = bool(ctx.train) and self._p > 0
        if not self._masked:
            if out is not x:
                self.backend.copy(out, x)
            return
        self._draw(ctx.rng, x.size)
        self._apply(x, out)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        self._dx = self.scratch(self._dx, dy.shape)
        if self._masked:
            self._apply(dy, self._dx)
        else:
            self.backend.copy(self._dx, dy)
        return [self._dx]

    def _draw(self, rng, size: int) -> None:
        """A new mask for ``size`` values: here their uniforms."""
        self._uniform = self.scratch(self._uniform, (size,), np.float64)
        rng.random(out=self._uniform)

    def _apply(self, a: np.ndarray, out: np.ndarray) -> None:
        """out = a masked and scaled by the last mask drawn (forward and backward alike)."""
        dropout_apply(a.reshape(-1), self._uniform, self._p, self._scale, out.reshape(-1))


@register("lrn")
class LRNOp(Op):
    """``lrn(size, alpha, beta, k)``, PyTorch's LocalResponseNorm across channels:
    b_c = a_c / (k + alpha/size * sum of a_c'^2 for c' in c - size//2 .. c + (size-1)//2)^beta."""

    #: the module whose kernels the op runs (a device backend's op subclasses with its own)
    kernels = cpu_kernels

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        self._channels = in_shapes[0][-1]
        self._size = int(layer.size)
        self._alpha, self._beta, self._k = float(layer.alpha), float(layer.beta), float(layer.k)
        self._denom: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        c = self._channels
        x = inputs[0].reshape(-1, c)
        self._denom = self.scratch(self._denom, x.shape)
        self.kernels.lrn_forward(x, out.reshape(-1, c), self._denom, self._size, self._alpha, self._beta, self._k)
        self._x = x

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        if not self.need_input_grad[0]:
            return [None]
        c = self._channels
        self._dx = self.scratch(self._dx, dy.shape)
        dx = self._dx.reshape(-1, c)
        self.kernels.lrn_backward(self._x, dy.reshape(-1, c), self._denom, dx, self._size, self._alpha, self._beta)
        return [self._dx]
