"""Element-wise memory kernels: fill, copy and accumulate, on arrays of 1 to 4 dimensions.

Contiguous arrays run as one flat 1-D launch. A strided destination (a channel slice of a concat
buffer, ``buffer[..., lo:hi]``) cannot be flattened without copying, so each operation also has a
kernel per rank that unravels the flat thread index into an index tuple: one thread per element,
each reading and writing through the arrays' own strides.
"""

from __future__ import annotations

import math
from typing import Any

from numba import cuda

THREADS = 256


@cuda.jit(device=True)
def _set(dst, src, value, index):
    dst[index] = value


@cuda.jit(device=True)
def _copy(dst, src, value, index):
    dst[index] = src[index]


@cuda.jit(device=True)
def _add(dst, src, value, index):
    dst[index] += src[index]


def _kernels(body):
    """Kernels applying device function ``body(dst, src, value, index)`` to every element of
    ``dst``, by rank (1 to 4)."""

    @cuda.jit
    def rank1(dst, src, value):
        i = cuda.grid(1)
        if i < dst.shape[0]:
            body(dst, src, value, i)

    @cuda.jit
    def rank2(dst, src, value):
        i = cuda.grid(1)
        if i < dst.size:
            columns = dst.shape[1]
            body(dst, src, value, (i // columns, i % columns))

    @cuda.jit
    def rank3(dst, src, value):
        i = cuda.grid(1)
        if i < dst.size:
            c = i % dst.shape[2]
            r = i // dst.shape[2]
            body(dst, src, value, (r // dst.shape[1], r % dst.shape[1], c))

    @cuda.jit
    def rank4(dst, src, value):
        i = cuda.grid(1)
        if i < dst.size:
            c = i % dst.shape[3]
            r = i // dst.shape[3]
            w = r % dst.shape[2]
            r = r // dst.shape[2]
            body(dst, src, value, (r // dst.shape[1], r % dst.shape[1], w, c))

    return {1: rank1, 2: rank2, 3: rank3, 4: rank4}


_FILL, _COPY, _ADD = _kernels(_set), _kernels(_copy), _kernels(_add)


def _launch(kernels: dict, dst: Any, src: Any, value: float) -> None:
    if dst.size == 0:
        return
    if dst.is_c_contiguous() and (src is dst or src.is_c_contiguous()):
        dst, src = dst.reshape(dst.size), src.reshape(src.size)
    if dst.ndim not in kernels:
        raise ValueError(f"memory kernels take arrays of 1 to 4 dimensions, not {dst.ndim}")
    kernels[dst.ndim][math.ceil(dst.size / THREADS), THREADS](dst, src, value)


def fill(dst: Any, value: float) -> None:
    """Every element of device array ``dst`` (any strides) set to ``value``."""
    _launch(_FILL, dst, dst, value)


def copy(dst: Any, src: Any) -> None:
    """``dst[...] = src`` for device arrays of one shape; either may be strided."""
    _check(dst, src)
    _launch(_COPY, dst, src, 0.0)


def add_into(dst: Any, src: Any) -> None:
    """``dst += src`` for device arrays of one shape; either may be strided."""
    _check(dst, src)
    _launch(_ADD, dst, src, 0.0)


def _check(dst: Any, src: Any) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"shapes differ: destination {tuple(dst.shape)}, source {tuple(src.shape)}")
