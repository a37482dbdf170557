"""Max and average pooling on channels-last images N x H x W x C (1-D signals: N x 1 x L x C).

The window geometry follows the layer types exactly (cnnlang/layers/pool.py): output position
``o`` covers inputs ``o*stride - pad + i*dilation`` for ``i < kernel``; positions outside the
input are padding. Max pooling treats padding as -inf (it never wins) and records, per output
value, the flat position ``h*W + w`` of its arg-max in the image (ties: the first in row-major
window order, as PyTorch; a NaN wins so that it propagates). Average pooling uses PyTorch's
divisor: with ``count_pad`` the window clipped to the padded input (``W + pad``: a ceil-mode
window hanging past the padding does not count the overhang), without it the real elements only.
Global average pooling is average pooling with the whole image as the window.

Every loop keeps the channel axis innermost, where the data is contiguous. Max pooling's forward
runs images x output rows in parallel (in inference without the arg-max, separably:
``_maxpool_values``); average pooling's forward works separably on flat rows of
an image (see ``_avgpool_forward``) and runs images in parallel; backward kernels scatter into
the input gradient, so they run images in parallel (windows of one image may overlap).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True, error_model="numpy")
def maxpool_forward(x, out, argmax, kh, kw, sh, sw, ph, pw, dh, dw):  # pragma: no cover - jitted
    """out[n, oh, ow, c] = max over the window of x[n, :, :, c]; argmax gets its flat h*W + w.
    A window that holds no input (only possible with dilation: width 1, kernel 2, dilation 2,
    pad 1) gives -inf and arg-max -1, which backward skips."""
    n_img, in_h, in_w, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    for task in prange(n_img * out_h):
        n = task // out_h
        oh = task % out_h
        h0 = oh * sh - ph
        for ow in range(out_w):
            w0 = ow * sw - pw
            for c in range(channels):
                out[n, oh, ow, c] = -np.inf
                argmax[n, oh, ow, c] = -1
            for i in range(kh):
                h = h0 + i * dh
                if h < 0 or h >= in_h:
                    continue
                for j in range(kw):
                    w = w0 + j * dw
                    if w < 0 or w >= in_w:
                        continue
                    pos = h * in_w + w
                    for c in range(channels):
                        v = x[n, h, w, c]
                        best = out[n, oh, ow, c]
                        arg = argmax[n, oh, ow, c]
                        # The first real input always enters (even -inf); after that strictly
                        # greater keeps the first maximum, and a NaN takes over once. Selects,
                        # not branches: on random data a branch here mispredicts half the time
                        # (2.5x slower on LeNet's first pooling).
                        take = (arg < 0) | (v > best) | ((v != v) & (best == best))
                        out[n, oh, ow, c] = v if take else best
                        argmax[n, oh, ow, c] = pos if take else arg


#: Output rows per task of ``_maxpool_values``: its input rows' maxima are found once per band.
MAXPOOL_BAND = 8
#: From this many channels a strided ``_maxpool_values`` works per output pixel (vector loops over
#: its channels): 1.4-1.5x faster than every column then every sw-th pixel on GoogLeNet's
#: stride-2 pools (64-480 channels, one thread), 1.2x slower on LeNet-5's 6 channels.
PIXELWISE_CHANNELS = 16


@njit(parallel=True, cache=True, error_model="numpy")
def _maxpool_values(x, out, kh, kw, sh, sw, ph, pw, dh, dw):  # pragma: no cover - jitted
    """maxpool_forward's values without the arg-max (inference: nothing routes a gradient), on
    C-contiguous arrays, separably, per band of MAXPOOL_BAND output rows of an image: each input
    row the band's windows touch is copied once into a line padded with -inf and its kw-column
    window maxima taken in vectorised loops (flat passes for stride 1; for a stride > 1 per output
    pixel over its channels, or, with few channels, at every column and then every sw-th pixel
    kept: gathers measured 2x slower); each output row then combines its window rows' maxima in
    order. Rows first, then columns within a row (columns first would meet the maxima in
    column-major order), and ``np.maximum(earlier, later)``, which keeps the earlier on a tie and the earlier NaN, are maxpool_forward's select:
    the same first maximum (+0 or -0) and the same first NaN. The same select written as a
    conditional compiles to scalar code (0.57 ns per element, in L1), np.maximum vectorises
    (0.14 ns)."""
    n_img, in_h, in_w, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    width, size = in_w * channels, out_w * channels
    padded = max(in_w + pw, (out_w - 1) * sw + (kw - 1) * dw + 1) * channels
    full = ((out_w - 1) * sw + 1) * channels  # a row's window maxima at every column up to the last window's
    low = x.dtype.type(-np.inf)
    bands = (out_h + MAXPOOL_BAND - 1) // MAXPOOL_BAND
    span = (MAXPOOL_BAND - 1) * sh + (kh - 1) * dh + 1  # input rows a band's windows cover
    for task in prange(n_img * bands):
        n = task // bands
        o0 = (task % bands) * MAXPOOL_BAND
        o1 = min(out_h, o0 + MAXPOOL_BAND)
        image = x[n].reshape(in_h, width)
        rows = out[n].reshape(out_h, size)
        line = np.full(padded, low, x.dtype)
        inner = line[pw * channels : pw * channels + width]
        h0 = o0 * sh - ph
        maxima = np.empty((span, size), x.dtype)  # row h's window maxima at maxima[h - h0]
        wide = np.empty(full if sw != 1 else 0, x.dtype)
        for r in range(min(span, (o1 - 1) * sh + (kh - 1) * dh + 1 - o0 * sh)):
            h = h0 + r
            if h < 0 or h >= in_h:
                continue
            source = image[h]
            for q in range(width):
                inner[q] = source[q]
            best = maxima[r]
            if sw == 1 or channels < PIXELWISE_CHANNELS:
                # flat passes, over Wo*C (stride 1) or every column, then every sw-th pixel kept
                into = best if sw == 1 else wide
                start = line[:full]
                for q in range(full):
                    into[q] = start[q]
                for j in range(1, kw):
                    part = line[j * dw * channels : j * dw * channels + full]
                    for q in range(full):
                        into[q] = np.maximum(into[q], part[q])
                if sw != 1:
                    for ow in range(out_w):
                        kept = best[ow * channels : (ow + 1) * channels]
                        pixel = wide[ow * sw * channels : ow * sw * channels + channels]
                        for c in range(channels):
                            kept[c] = pixel[c]
            else:  # per output pixel, over its contiguous channels
                for ow in range(out_w):
                    into = best[ow * channels : (ow + 1) * channels]
                    base = ow * sw * channels
                    start = line[base : base + channels]
                    for c in range(channels):
                        into[c] = start[c]
                    for j in range(1, kw):
                        part = line[base + j * dw * channels : base + (j * dw + 1) * channels]
                        for c in range(channels):
                            into[c] = np.maximum(into[c], part[c])
        for oh in range(o0, o1):
            target = rows[oh]
            first = True
            for i in range(kh):
                h = oh * sh - ph + i * dh
                if h < 0 or h >= in_h:
                    continue
                row = maxima[h - h0]
                if first:
                    for q in range(size):
                        target[q] = row[q]
                else:
                    for q in range(size):
                        target[q] = np.maximum(target[q], row[q])
                first = False
            if first:  # no input row in the window (dilation only): -inf, as maxpool_forward
                for q in range(size):
                    target[q] = low


def maxpool_values(x: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                   dw: int) -> None:
    """out = maxpool_forward's values, no arg-max (inference); ``out`` must be C-contiguous, ``x``
    is made so (a no-op when it is)."""
    _maxpool_values(np.ascontiguousarray(x), out, kh, kw, sh, sw, ph, pw, dh, dw)


@njit(parallel=True, cache=True, error_model="numpy")
def maxpool_backward(dy, argmax, dx):  # pragma: no cover - jitted
    """dx = 0, then each dy[n, oh, ow, c] is added to the input element that won its window."""
    n_img, in_h, in_w, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for n in prange(n_img):
        dx[n] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                for c in range(channels):
                    pos = argmax[n, oh, ow, c]
                    if pos >= 0:
                        dx[n, pos // in_w, pos % in_w, c] += dy[n, oh, ow, c]


@njit(cache=True, inline="always", error_model="numpy")
def _avg_window(o, stride, pad, kernel, size, count_pad):  # pragma: no cover - jitted
    """First and end (exclusive) real input index of window ``o``, and its divisor share."""
    start = o * stride - pad
    end = min(start + kernel, size + pad)
    padded = end - start
    start = max(start, 0)
    end = min(end, size)
    return start, end, padded if count_pad else end - start


@njit(parallel=True, cache=True, error_model="numpy")
def _avgpool_forward(x, out, kh, kw, sh, sw, ph, pw, count_pad):  # pragma: no cover - jitted
    """avgpool_forward on C-contiguous arrays, separably per image and output row: the window's
    input rows are summed into one row (flat passes over W*C), which sits inside a zero-padded
    line, so that every window has exactly kw columns there; each output (ow, c) then adds its
    kw values, found through a precomputed offset (flat loops over Wo*C, vectorised as
    gathers). Looping over (ow, c) with the channels innermost runs scalar for few channels:
    LeNet-5's first pooling (64 x 28 x 28 x 6, 2x2) took 0.39 ms against 0.17 ms (one thread)."""
    n_img, in_h, in_w, channels = x.shape
    out_h, out_w = out.shape[1], out.shape[2]
    width, size = in_w * channels, out_w * channels
    # the padded line: pw zero columns, the row, then zeros up to the last window's end
    padded = max(in_w + pw, (out_w - 1) * sw + kw) * channels
    offset = np.empty(size, np.int64)  # window (ow, c)'s first element in the padded line
    scale = np.empty(size, x.dtype)  # its share of the divisor: 1 / w_div
    for ow in range(out_w):
        _, _, w_div = _avg_window(ow, sw, pw, kw, in_w, count_pad)
        for c in range(channels):
            offset[ow * channels + c] = ow * sw * channels + c
            scale[ow * channels + c] = 1.0 / w_div if w_div > 0 else 0.0
    for n in prange(n_img):
        image = x[n].reshape(in_h, width)
        rows = out[n].reshape(out_h, size)
        padded_line = np.zeros(padded, x.dtype)
        line = padded_line[pw * channels : pw * channels + width]
        for oh in range(out_h):
            h_lo, h_hi, h_div = _avg_window(oh, sh, ph, kh, in_h, count_pad)
            target = rows[oh]
            if h_hi <= h_lo or h_div == 0:
                target[:] = 0
                continue
            first = image[h_lo]
            for q in range(width):
                line[q] = first[q]
            for h in range(h_lo + 1, h_hi):
                source = image[h]
                for q in range(width):
                    line[q] += source[q]
            for q in range(size):
                target[q] = padded_line[offset[q]]
            for j in range(1, kw):
                shift = j * channels
                for q in range(size):
                    target[q] += padded_line[offset[q] + shift]
            row_scale = x.dtype.type(1.0 / h_div)
            for q in range(size):
                target[q] *= scale[q] * row_scale


@njit(parallel=True, cache=True, error_model="numpy")
def _avgpool_backward(dy, dx, kh, kw, sh, sw, ph, pw, count_pad):  # pragma: no cover - jitted
    """avgpool_backward on C-contiguous arrays."""
    n_img, in_h, in_w, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    for n in prange(n_img):
        dx[n] = 0
        for oh in range(out_h):
            h_lo, h_hi, h_div = _avg_window(oh, sh, ph, kh, in_h, count_pad)
            for ow in range(out_w):
                w_lo, w_hi, w_div = _avg_window(ow, sw, pw, kw, in_w, count_pad)
                divisor = h_div * w_div
                if divisor == 0:
                    continue
                scale = dx.dtype.type(1.0 / divisor)
                for h in range(h_lo, h_hi):
                    for w in range(w_lo, w_hi):
                        for c in range(channels):
                            dx[n, h, w, c] += dy[n, oh, ow, c] * scale


@njit(parallel=True, cache=True, error_model="numpy")
def _avgpool_backward_disjoint(dy, dx, kh, kw, sh, sw, ph, pw, count_pad):  # pragma: no cover - jitted
    """avgpool_backward for windows that do not overlap (stride >= kernel both ways: LeNet-5's
    2x2 pools): each input element gets its one window's dy / divisor, or 0, written once (no
    zeroing and adding). Per output row the window's first input row is written, the others are
    flat copies of it. The general kernel (a 4-D loop of += with the channels innermost, scalar
    for few channels) took 0.27 ms on LeNet-5's first pool (64 x 28 x 28 x 6), this one 0.21
    (one thread, CPU time, median of 30 alternating); row gathers through an index instead of the
    column loop measured no faster (gathers are slow on AVX2)."""
    n_img, in_h, in_w, channels = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    width, size = in_w * channels, out_w * channels
    gaps = False  # columns that no window covers (stride > kernel, padding, floor mode)
    covered_w = 0
    for ow in range(out_w):
        w_lo, w_hi, _ = _avg_window(ow, sw, pw, kw, in_w, count_pad)
        gaps = gaps or w_lo > covered_w
        covered_w = max(covered_w, w_hi)
    gaps = gaps or covered_w < in_w
    # each window's 1 / divisor (0 for an empty one), once per call: a division per window and
    # image cost a third of the time
    scales = np.zeros((out_h, out_w), dx.dtype)
    for oh in range(out_h):
        _, _, h_div = _avg_window(oh, sh, ph, kh, in_h, count_pad)
        for ow in range(out_w):
            _, _, w_div = _avg_window(ow, sw, pw, kw, in_w, count_pad)
            if h_div * w_div > 0:
                scales[oh, ow] = 1.0 / (h_div * w_div)
    for n in prange(n_img):
        image = dx[n].reshape(in_h, width)
        rows = dy[n].reshape(out_h, size)
        covered = 0  # input rows below this one are written
        for oh in range(out_h):
            h_lo, h_hi, _ = _avg_window(oh, sh, ph, kh, in_h, count_pad)
            for h in range(covered, h_lo):
                image[h, :] = 0
            if h_hi <= h_lo:
                continue
            covered = h_hi
            row = rows[oh]
            first = image[h_lo]
            if gaps:
                first[:] = 0
            for ow in range(out_w):
                w_lo, w_hi, _ = _avg_window(ow, sw, pw, kw, in_w, count_pad)
                scale = scales[oh, ow]  # (as the general kernel's: the same values, bit for bit)
                for w in range(w_lo, w_hi):
                    for c in range(channels):
                        first[w * channels + c] = row[ow * channels + c] * scale
            for h in range(h_lo + 1, h_hi):
                target = image[h]
                for q in range(width):
                    target[q] = first[q]
        for h in range(covered, in_h):
            image[h, :] = 0


def avgpool_forward(x: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                    count_pad: bool) -> None:
    """out[n, oh, ow, c] = sum of the real inputs in the window / divisor (0 for an empty one);
    ``out`` must be C-contiguous, ``x`` is made so (a no-op when it is)."""
    _avgpool_forward(np.ascontiguousarray(x), out, kh, kw, sh, sw, ph, pw, count_pad)


def avgpool_backward(dy: np.ndarray, dx: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                     count_pad: bool) -> None:
    """dx = 0, then each dy / divisor is added to every real input of its window; ``dx`` must be
    C-contiguous, ``dy`` is made so (a gradient may be a channel slice of a concat's)."""
    # disjoint windows with fewer channels than a float32 vector: the general kernel's channel
    # loop runs scalar there (LeNet-5's first pool: 0.27 -> 0.21 ms, one thread), but with 16
    # channels it won (its second: 0.038 against 0.057 ms)
    disjoint = sh >= kh and sw >= kw and dx.shape[3] < 8
    kernel = _avgpool_backward_disjoint if disjoint else _avgpool_backward
    kernel(np.ascontiguousarray(dy), dx, kh, kw, sh, sw, ph, pw, count_pad)


def global_avgpool_forward(x: np.ndarray, out: np.ndarray) -> None:
    """out[n, 0, 0, c] = mean of x[n, :, :, c]; x is N x H x W x C, out N x 1 x 1 x C."""
    _, in_h, in_w, _ = x.shape
    avgpool_forward(x, out, in_h, in_w, 1, 1, 0, 0, True)


def global_avgpool_backward(dy: np.ndarray, dx: np.ndarray) -> None:
    """dx[n, h, w, c] = dy[n, 0, 0, c] / (H*W)."""
    _, in_h, in_w, _ = dx.shape
    avgpool_backward(dy, dx, in_h, in_w, 1, 1, 0, 0, True)
