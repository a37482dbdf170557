"""Max and average pooling on the GPU, with the geometry and divisors of
runtime/kernels/cpu/pool.py: channels-last images N x H x W x C (1-D signals as N x 1 x L x C),
output ``o`` covering inputs ``o*stride - pad + i*dilation``; max pooling records each output's
arg-max (flat ``h*W + w``, -1 for a window with no input), average pooling uses PyTorch's divisor
(``count_pad``: the window clipped to the padded input).

Forward kernels run one thread per output value, channel fastest (neighbouring threads read
neighbouring addresses). Backward kernels *gather*: one thread per input value visits the outputs
whose windows hold it, in the CPU's order (rows, then columns, ascending), so no two threads
write one value, there are no atomics, and every sum is reproducible (and equal to the CPU's).
Global average pooling is average pooling over the whole image.
"""

from __future__ import annotations

import math

from numba import cuda

from .launch import elementwise


@cuda.jit(device=True, inline=True)
def _position(i, a):  # pragma: no cover - device code
    """Flat index i of the channels-last array ``a`` as (n, h, w, c)."""
    _, height, width, channels = a.shape
    c = i % channels
    w = (i // channels) % width
    h = (i // (channels * width)) % height
    return i // (channels * width * height), h, w, c


@cuda.jit
def _maxpool_forward(x, out, argmax, kh, kw, sh, sw, ph, pw, dh, dw):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= out.size:
        return
    in_h, in_w = x.shape[1], x.shape[2]
    n, oh, ow, c = _position(i, out)
    best = x.dtype.type(-math.inf)
    arg = -1
    for a in range(kh):
        h = oh * sh - ph + a * dh
        if h < 0 or h >= in_h:
            continue
        for b in range(kw):
            w = ow * sw - pw + b * dw
            if w < 0 or w >= in_w:
                continue
            v = x[n, h, w, c]
            # The first real input enters (even -inf); then strictly greater keeps the first
            # maximum, and a NaN takes over once: the CPU kernel's rule.
            if arg < 0 or v > best or (v != v and best == best):
                best = v
                arg = h * in_w + w
    out[n, oh, ow, c] = best
    argmax[n, oh, ow, c] = arg


@cuda.jit(device=True, inline=True)
def _first_window(position, stride, pad, kernel_extent, size_out):  # pragma: no cover - device code
    """The first output index (clamped at 0) whose window, ``kernel_extent`` long, can reach
    input ``position``; outputs from there to the last one with start <= position are visited."""
    lowest = position + pad - kernel_extent + 1
    first = 0 if lowest <= 0 else (lowest + stride - 1) // stride
    return min(first, size_out)


@cuda.jit
def _maxpool_backward(dy, argmax, dx, kh, kw, sh, sw, ph, pw, dh, dw):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= dx.size:
        return
    out_h, out_w = dy.shape[1], dy.shape[2]
    n, h, w, c = _position(i, dx)
    pos = h * dx.shape[2] + w
    total = dx.dtype.type(0)
    for oh in range(_first_window(h, sh, ph, (kh - 1) * dh + 1, out_h), out_h):
        if oh * sh - ph > h:
            break
        for ow in range(_first_window(w, sw, pw, (kw - 1) * dw + 1, out_w), out_w):
            if ow * sw - pw > w:
                break
            if argmax[n, oh, ow, c] == pos:
                total += dy[n, oh, ow, c]
    dx[n, h, w, c] = total


@cuda.jit(device=True, inline=True)
def _avg_window(o, stride, pad, kernel, size, count_pad):  # pragma: no cover - device code
    """First and end (exclusive) real input index of window ``o``, and its divisor share."""
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    padded = end - start
    start = max(start, 0)
    end = min(end, size)
    return start, end, padded if count_pad else end - start


@cuda.jit
def _avgpool_forward(x, out, kh, kw, sh, sw, ph, pw, count_pad):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= out.size:
        return
    in_h, in_w = x.shape[1], x.shape[2]
    n, oh, ow, c = _position(i, out)
    h_lo, h_hi, h_div = _avg_window(oh, sh, ph, kh, in_h, count_pad)
    w_lo, w_hi, w_div = _avg_window(ow, sw, pw, kw, in_w, count_pad)
    total = x.dtype.type(0)
    for h in range(h_lo, h_hi):
        for w in range(w_lo, w_hi):
            total += x[n, h, w, c]
    divisor = h_div * w_div
    if divisor > 0:
        total *= x.dtype.type(1.0 / divisor)
    out[n, oh, ow, c] = total


@cuda.jit
def _avgpool_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_pad):  # pragma: no cover - device code
    i = cuda.grid(1)
    if i >= dx.size:
        return
    in_h, in_w = dx.shape[1], dx.shape[2]
    out_h, out_w = dy.shape[1], dy.shape[2]
    n, h, w, c = _position(i, dx)
    total = dx.dtype.type(0)
    for oh in range(_first_window(h, sh, ph, kh, out_h), out_h):
        h_lo, h_hi, h_div = _avg_window(oh, sh, ph, kh, in_h, count_pad)
        if h_lo > h:
            break
        if h >= h_hi:
            continue
        for ow in range(_first_window(w, sw, pw, kw, out_w), out_w):
            w_lo, w_hi, w_div = _avg_window(ow, sw, pw, kw, in_w, count_pad)
            if w_lo > w:
                break
            divisor = h_div * w_div
            if w < w_hi and divisor > 0:
                total += dy[n, oh, ow, c] * dx.dtype.type(1.0 / divisor)
    dx[n, h, w, c] = total


def maxpool_forward(x, out, argmax, kh, kw, sh, sw, ph, pw, dh, dw) -> None:
    """out = the window maxima of x, argmax their flat positions (N x H x W x C device arrays)."""
    blocks, threads = elementwise(out.size)
    _maxpool_forward[blocks, threads](x, out, argmax, kh, kw, sh, sw, ph, pw, dh, dw)


def maxpool_backward(dy, argmax, dx, kh, kw, sh, sw, ph, pw, dh, dw) -> None:
    """dx = the sum of dy over the windows each input won (0 elsewhere)."""
    blocks, threads = elementwise(dx.size)
    _maxpool_backward[blocks, threads](dy, argmax, dx, kh, kw, sh, sw, ph, pw, dh, dw)


def avgpool_forward(x, out, kh, kw, sh, sw, ph, pw, count_pad) -> None:
    """out = the window sums of x / their divisors (0 for a window with no input)."""
    blocks, threads = elementwise(out.size)
    _avgpool_forward[blocks, threads](x, out, kh, kw, sh, sw, ph, pw, count_pad)


def avgpool_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_pad) -> None:
    """dx = the sum of dy / divisor over the windows that hold each input."""
    blocks, threads = elementwise(dx.size)
    _avgpool_backward[blocks, threads](dy, dx, kh, kw, sh, sw, ph, pw, count_pad)


def global_avgpool_forward(x, out) -> None:
    """out[n, 0, 0, c] = mean of x[n, :, :, c]."""
    _, in_h, in_w, _ = x.shape
    avgpool_forward(x, out, in_h, in_w, 1, 1, 0, 0, True)


def global_avgpool_backward(dy, dx) -> None:
    """dx[n, h, w, c] = dy[n, 0, 0, c] / (H*W)."""
    _, in_h, in_w, _ = dx.shape
    avgpool_backward(dy, dx, in_h, in_w, 1, 1, 0, 0, True)
