"""Between the runtime's channels-last layout and the user's channels-first flat features (what
``fc`` reads and ``flatten`` gives: PyTorch's order, so fc weights interchange), on the GPU.

x (N, S, C), S the spatial positions, and flat (N, C*S) with flat[n, c*S + s] = x[n, s, c]. One
thread per element, consecutive threads on consecutive flat features: writes of the forward
direction coalesce, reads gather with stride C (the arrays are activations, small next to the
fc weights these feed).
"""

from __future__ import annotations

from numba import cuda

from .im2col import launch


@cuda.jit
def _to_channels_first(x, flat):  # pragma: no cover - compiled
    n_count, s_count, c_count = x.shape
    t = cuda.grid(1)
    if t < n_count * s_count * c_count:
        f = t % (c_count * s_count)
        n = t // (c_count * s_count)
        flat[n, f] = x[n, f % s_count, f // s_count]


@cuda.jit
def _to_channels_last(flat, x):  # pragma: no cover - compiled
    n_count, s_count, c_count = x.shape
    t = cuda.grid(1)
    if t < n_count * s_count * c_count:
        f = t % (c_count * s_count)
        n = t // (c_count * s_count)
        x[n, f % s_count, f // s_count] = flat[n, f]


def flatten_user_order(x, out) -> None:
    """out (N, C*S) = x (N, ..., C) in channels-first order; ``out`` may have strided rows."""
    n, channels = x.shape[0], tuple(x.shape)[-1]  # (the simulator refuses negative indices)
    x3 = x.reshape(n, -1, channels)
    _to_channels_first[launch(x.size)](x3, out)


def unflatten_user_order(flat, out) -> None:
    """The inverse: out (N, ..., C), contiguous, from flat (N, C*S)."""
    n, channels = out.shape[0], tuple(out.shape)[-1]
    _to_channels_last[launch(out.size)](flat, out.reshape(n, -1, channels))
