"""Max pooling's inference values per output pixel: for each output pixel, the maximum of its
window's input pixels in vector loops over their contiguous channels, in the window's row-major
order, with ``np.maximum(earlier, later)``: pool.py's ``maxpool_forward`` select (the same first
maximum, +0 or -0, and the same first NaN), so the values are bitwise pool.py's.

Why: pool.py's separable ``_maxpool_values`` copies each input row into a padded line, stores its
row-window maxima and then combines them: about ten passes of loads and stores per output
element over rows of W*C (28 KB and more at GoogLeNet's 256-832 channels: L2, not L1). With many
channels the direct window reads its KH*KW inputs (L1/L2 hits: the window rows are reused by the
next output pixels) and writes each output once.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: From this many channels the per-pixel kernel runs (a pixel's channels are then at least two
#: 32-byte vectors of float32; few channels leave its vector loops short), ...
MIN_CHANNELS = 64
#: ... for stride-1 outputs at least this wide: at 7x7 (GoogLeNet's inception5, 832 channels,
#: 3x3 stride 1) it measured 0.93x the separable kernel; its 7x7 output of the 2x2 stride-2 pool
#: 1.9-2x. Measured on GoogLeNet's pools (b8, one thread, CPU time, two runs): stride 2
#: 1.24-1.55x, stride 1 at 28x28 1.28-1.36x, at 14x14 1.06-1.13x.
MIN_WIDTH = 8


def takes(channels: int, out_width: int, stride_w: int) -> bool:
    """Whether inference max pooling runs here rather than pool.py's separable kernel."""
    return channels >= MIN_CHANNELS and (out_width >= MIN_WIDTH or stride_w > 1)


@njit(parallel=True, cache=True, error_model="numpy", _nrt=False)
def _maxpool_pixels(x, out, n_img, in_h, in_w, channels, out_h, out_w, kh, kw, sh, sw, ph, pw, dh,
                    dw):  # pragma: no cover - jitted
    """out (N, Ho, Wo, C flat) = max over each window of x (N, H, W, C flat); padding never wins;
    a window without inputs gives -inf (as maxpool_forward). Parallel over images x output rows."""
    low = x.dtype.type(-np.inf)
    for task in prange(n_img * out_h):
        n = task // out_h
        oh = task % out_h
        for ow in range(out_w):
            o = (task * out_w + ow) * channels
            target = out[o : o + channels]
            first = True
            w0 = ow * sw - pw
            # a window row's 3 taps in one pass (stride 1: measured 1.04-1.4x faster than tap by tap on
            # GoogLeNet's inception pools; at stride 2 1.1-1.3x slower)
            whole = kw == 3 and sw == 1 and w0 >= 0 and w0 + 2 * dw < in_w
            for i in range(kh):
                h = oh * sh - ph + i * dh
                if h < 0 or h >= in_h:
                    continue
                if whole:
                    s = ((n * in_h + h) * in_w + w0) * channels
                    a = x[s : s + channels]
                    b = x[s + dw * channels : s + (dw + 1) * channels]
                    d = x[s + 2 * dw * channels : s + (2 * dw + 1) * channels]
                    if first:
                        for c in range(channels):
                            target[c] = np.maximum(np.maximum(a[c], b[c]), d[c])
                        first = False
                    else:
                        for c in range(channels):
                            target[c] = np.maximum(np.maximum(np.maximum(target[c], a[c]), b[c]), d[c])
                    continue
                for j in range(kw):
                    w = w0 + j * dw
                    if w < 0 or w >= in_w:
                        continue
                    s = ((n * in_h + h) * in_w + w) * channels
                    source = x[s : s + channels]
                    if first:
                        for c in range(channels):
                            target[c] = source[c]
                        first = False
                    else:
                        for c in range(channels):
                            target[c] = np.maximum(target[c], source[c])
            if first:
                for c in range(channels):
                    target[c] = low


def maxpool_pixels(x: np.ndarray, out: np.ndarray, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, dh: int,
                   dw: int) -> None:
    """out (N, Ho, Wo, C) = max pooling's values of x (N, H, W, C), both C-contiguous; arguments
    as pool.py's maxpool_values."""
    n, h, w, c = x.shape
    _maxpool_pixels(x.reshape(-1), out.reshape(-1), n, h, w, c, out.shape[1], out.shape[2], kh, kw, sh, sw, ph, pw,
                    dh, dw)
