"""The sliding-window size rule shared by convolution and pooling: W2 = (W1 - F + 2P)/S + 1."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ShapeError, format_shape


@dataclass(frozen=True)
class AxisResult:
    size: int
    formula: str


def per_axis(name: str, value: tuple[int, ...], rank: int) -> tuple[int, ...]:
    if len(value) == 1:
        return value * rank
    if len(value) != rank:
        raise ShapeError(f"{name} has {len(value)} sizes but the input has {rank} spatial axes")
    return value


def resolve_padding(
    padding: tuple[int, ...] | str, sizes: tuple[int, ...], kernels: tuple[int, ...], strides: tuple[int, ...]
) -> tuple[tuple[int, int], ...]:
    """Padding before and after each axis. ``same`` keeps ceil(W/S) outputs, splitting any odd
    total padding with the extra pixel after (the TensorFlow convention)."""
    rank = len(sizes)
    if padding == "valid":
        return ((0, 0),) * rank
    if padding == "same":
        pads = []
        for w, f, s in zip(sizes, kernels, strides):
            out = -(-w // s)
            total = max((out - 1) * s + f - w, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple((p, p) for p in per_axis("pad", padding, rank))


def slide(w: int, f: int, s: int, pads: tuple[int, int], ceil: bool = False) -> AxisResult:
    """Output length of a window of (effective) size f, stride s over w inputs."""
    before, after = pads
    span = w + before + after - f
    if ceil:
        out = -(-span // s) + 1
        # As in PyTorch, the last window must start inside the input or the leading padding.
        if out > 0 and (out - 1) * s >= w + before:
            out -= 1
    else:
        out = span // s + 1
    pad_text = f"2*{before}" if before == after else f"{before} + {after}"
    core = f"({w} - {f} + {pad_text})/{s}"
    exact = span % s == 0
    if not exact:
        core = f"{'ceil' if ceil else 'floor'}({core})"
    text = f"{core} + 1 = {out}"
    if ceil and out != -(-span // s) + 1:
        text = f"{core} + 1 - 1 = {out} (the last window would start in the padding)"
    return AxisResult(out, text)


def window_output(
    op: str,
    shape: tuple[int, ...],
    channels: int,
    kernels: tuple[int, ...],
    strides: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
    dilations: tuple[int, ...],
    ceil: bool = False,
) -> tuple[tuple[int, ...], list[str]]:
    """The output shape (channels first) and the arithmetic per axis; fails on a size < 1."""
    sizes = shape[1:]
    names = ("H", "W") if len(sizes) == 2 else ("L",)
    words = {"H": "height", "W": "width", "L": "length"}
    results, formulas = [], []
    for axis, (w, k, s, p, d) in enumerate(zip(sizes, kernels, strides, pads, dilations)):
        effective = d * (k - 1) + 1
        result = slide(w, effective, s, p, ceil)
        if result.size < 1:
            raise ShapeError(
                f"output {words[names[axis]]} would be {result.formula.rsplit(' = ', 1)[0]} = {result.size}: "
                f"the {effective}-wide window does not fit the {w + p[0] + p[1]}-wide padded input "
                f"(input {format_shape(shape)})"
            )
        results.append(result.size)
        formulas.append(f"{names[axis]} = {result.formula}")
    if len(formulas) == 2 and formulas[0][4:] == formulas[1][4:]:
        formulas = [f"H = W = {formulas[0][4:]}"]
    return (channels, *results), formulas


# ---- the reference implementations' window gather (NumPy, imported on use) ---------------


def window_indices(sizes, kernels, strides, pads, dilations, outs):
    """For each spatial axis, the index of every (output position, kernel tap) into the input
    padded by ``pads`` (before, after) and, where a ceil-mode window hangs further, by the extra
    amount returned: ([Ho x KH index array, Wo x KW ...], extra after each axis)."""
    import numpy as np

    indices, extra = [], []
    for size, k, s, (before, after), d, out in zip(sizes, kernels, strides, pads, dilations, outs):
        index = np.arange(out)[:, None] * s + np.arange(k)[None, :] * d
        indices.append(index)
        extra.append(max(int(index.max()) + 1 - (size + before + after), 0))
    return indices, extra


def gather_windows(x, geometry, outs, fill_pad=0.0, fill_beyond=0.0):
    """Every window of ``x`` (N x C x H x W): N x C x Ho x Wo x KH x KW. Padding holds
    ``fill_pad``; what lies past it (a ceil-mode window hanging over) holds ``fill_beyond``."""
    import numpy as np

    kernels, strides, pads, dilations = geometry
    (rows, cols), extra = window_indices(x.shape[2:], kernels, strides, pads, dilations, outs)
    (pt, pb), (pl, pr) = pads
    n, c, h, w = x.shape
    full = np.full((n, c, h + pt + pb + extra[0], w + pl + pr + extra[1]), fill_beyond)
    full[:, :, : h + pt + pb, : w + pl + pr] = fill_pad
    full[:, :, pt : pt + h, pl : pl + w] = x
    return full[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def scatter_windows(windows, x_shape, geometry):
    """The adjoint of :func:`gather_windows`: add every window value back onto its input
    position (padding dropped); N x C x H x W."""
    import numpy as np

    kernels, strides, pads, dilations = geometry
    outs = windows.shape[2:4]
    (rows, cols), extra = window_indices(x_shape[2:], kernels, strides, pads, dilations, outs)
    (pt, pb), (pl, pr) = pads
    n, c, h, w = x_shape
    full = np.zeros((n, c, h + pt + pb + extra[0], w + pl + pr + extra[1]))
    np.add.at(full, (slice(None), slice(None), rows[:, None, :, None], cols[None, :, None, :]), windows)
    return full[:, :, pt : pt + h, pl : pl + w]


def as_image_batch(x):
    """N x C x L as N x C x 1 x L (a view); images unchanged."""
    return x[:, :, None, :] if x.ndim == 3 else x


def as_image_geometry(geometry):
    """A 1-D window geometry (kernels, strides, pads, dilations) as 2-D with height 1."""
    kernels, strides, pads, dilations = geometry
    if len(kernels) == 2:
        return geometry
    return (1, *kernels), (1, *strides), ((0, 0), *pads), (1, *dilations)
