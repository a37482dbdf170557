"""What every runtime op is: one IR node bound to its kernels for fixed shapes and dtype.

Layout: tensors are channels-last inside the runtime (N x H x W x C, N x L x C, N x F), because a
1x1 convolution is then a plain GEMM and per-channel work (batchnorm, softmax, LRN) runs over the
contiguous last axis. Parameters keep the user-facing layout that PyTorch also uses (conv weight
O x I/g x KH x KW, fc weight out x in with inputs in C, H, W order), so weights interchange
without surprises; kernels repack what they need.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from cnnlang.layers import LayerType

from ..backend import CPU, Backend

Shape = tuple[int, ...]

#: (layer op name, backend name) -> the Op class that runs it there; filled by :func:`register`.
REGISTRY: dict[tuple[str, str], type["Op"]] = {}


def register(*ops: str, backend: str = CPU.name):
    """Class decorator: the Op runs layer ops ``ops`` on ``backend``."""

    def decorate(cls: type[Op]) -> type[Op]:
        cls.ops = tuple(ops)
        for op in ops:
            if (op, backend) in REGISTRY:
                raise ValueError(f"two ops for {op!r} on the {backend} backend")
            REGISTRY[(op, backend)] = cls
        return cls

    return decorate


def internal_shape(shape: Shape) -> Shape:
    """Per-example shape, channels first as the language writes it → channels last."""
    return shape if len(shape) == 1 else (*shape[1:], shape[0])


def user_shape(shape: Shape) -> Shape:
    """Channels-last per-example shape → the language's channels-first one."""
    return shape if len(shape) == 1 else (shape[-1], *shape[:-1])


def as_image(shape: Shape) -> Shape:
    """Per-example H x W x C, or L x C as 1 x L x C."""
    return shape if len(shape) == 3 else (1, *shape)


def scratch(buffer: np.ndarray | None, shape: Shape, dtype, backend: Backend = CPU) -> np.ndarray:
    """``buffer`` if it already has this shape, else a new one: allocated once per batch size."""
    if buffer is None or buffer.shape != shape:
        return backend.empty(shape, dtype)
    return buffer


def channel_slice(array, lo: int, hi: int):
    """``array[..., lo:hi]``, channels lo to hi of a channels-last array, spelt so that numba.cuda
    device arrays take it too (they accept no Ellipsis)."""
    return array[(slice(None),) * (array.ndim - 1) + (slice(lo, hi),)]


def window_geometry(layer: LayerType, in_shape: Shape, out_shape: Shape):
    """(kernels, strides, (before, after) pads, dilations) of a conv or pooling layer as 2-D (a
    1-D window becomes height 1), after checking that the layer's own shape rule gives
    ``out_shape``: the runtime and the compiler cannot disagree about a window."""
    source = user_shape(tuple(in_shape))
    expected = internal_shape(layer.output_shape([source]))
    if expected != tuple(out_shape):
        raise ValueError(f"{layer.op}: output shape {tuple(out_shape)} but the layer gives {expected}")
    kernels, strides, pads, dilations = layer.geometry(source)
    if len(kernels) == 1:
        return (1, *kernels), (1, *strides), ((0, 0), *pads), (1, *dilations)
    return kernels, strides, pads, dilations


def to_internal(array: np.ndarray) -> np.ndarray:
    """N x C x ... (the user's layout) → N x ... x C, contiguous."""
    if array.ndim <= 2:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def to_user(array: np.ndarray) -> np.ndarray:
    """N x ... x C → N x C x ..., contiguous."""
    if array.ndim <= 2:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(np.moveaxis(array, -1, 1))


@dataclass
class Context:
    """Run-wide state handed to every op: the mode and the seeded random generator (dropout)."""

    train: bool = False
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class Op:
    """Base class. Subclasses are registered with :func:`register` under the layer op names they
    implement and their backend.

    The executor creates one Op per node with the bound layer, the per-example input shapes and
    output shape in the internal (channels-last) layout, the dtype and the backend (whose arrays
    the op receives, and through which it allocates). It then sets ``params``,
    ``grads`` and ``buffers``: dicts of arrays owned by the network, keyed by the names in the
    layer's ``param_shapes``/``buffer_shapes`` (user layout). Ops read and write them in place and
    never rebind them, so optimisers and ``load`` may update arrays in place at any time.

    ``need_input_grad[i]`` is False where no gradient is wanted for input i (the network input);
    ``backward`` may then return None for it.

    Optimised inference (runtime/inference.py) may set ``activation`` ("relu", "tanh",
    "sigmoid") on ops that fuse it (``fuses_activation``), and hands a strided ``out`` (a channel
    slice of a concat buffer) only to ops with ``strided_out``; others get a scratch buffer.
    """

    ops: ClassVar[tuple[str, ...]] = ()
    #: forward accepts ``out`` that is a channel slice of a larger channels-last array
    strided_out: ClassVar[bool] = False
    #: forward applies ``self.activation`` after its bias (or sum) in the same pass
    fuses_activation: ClassVar[bool] = False
    #: forward (and a bound call) may be handed an ``out`` that is its residual input's own buffer
    #: (a conv that plan-memory marked ``in_place``); without it the plan gives it a buffer of its own
    writes_over_residual: ClassVar[bool] = False

    def __init__(
        self, layer: LayerType, in_shapes: list[Shape], out_shape: Shape, dtype: np.dtype, backend: Backend = CPU
    ):
        self.layer = layer
        self.backend = backend
        self.in_shapes = in_shapes
        self.out_shape = out_shape
        self.dtype = np.dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.need_input_grad: list[bool] = [True] * len(in_shapes)
        #: the order in which the plan adds backward's input gradients into their tensors' sums
        #: (None: the inputs'); an op that absorbed a later layer gives that layer's first, as the
        #: unfused graph's backward did, so that fusing never reorders a sum of three or more
        self.grad_order: tuple[int, ...] | None = None
        self.activation: str | None = None

    def scratch(self, buffer: np.ndarray | None, shape: Shape, dtype=None) -> np.ndarray:
        """:func:`scratch` on this op's backend, in its dtype unless given."""
        return scratch(buffer, shape, self.dtype if dtype is None else dtype, self.backend)

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        """Write the output for a batch into ``out`` (N x out_shape). In training mode keep what
        ``backward`` needs; the executor keeps ``inputs`` and ``out`` unchanged until then."""
        raise NotImplementedError

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        """``forward(inputs, out, ctx)`` as a call without arguments, for a caller whose arrays
        stay the same from call to call (the inference plan, runtime/inference.py, binds each
        step once per batch size and parameter refresh). Ops override it where fixing the arrays
        makes the call cheaper (views, plans and scratch made once; single-thread kernels for
        small work, runtime/kernels/cpu/serial.py): at batch 1 the per-call overhead is most of
        a layer's time."""
        return functools.partial(self.forward, inputs, out, ctx)

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        """Given dL/d(out), return dL/d(input) for each input and *overwrite* ``self.grads``.

        The returned arrays belong to the caller until the next backward (an op may reuse its
        own scratch buffers between calls, never ``dy`` or the forward arrays).
        """
        raise NotImplementedError
