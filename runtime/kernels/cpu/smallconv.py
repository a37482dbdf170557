"""Direct convolution with the inference epilogue fused, for windows over few input channels
(GoogLeNet's 3x3 "5x5" branches: 16-48 channels in, 32-128 out, 28x28 to 7x7), in Numba's pool.

Why: these layers are below the ``winograd`` pass's 64 channels; as im2col + BLAS sgemm (K = 9C =
144-432, N = 32-128) they ran at about half of ONNX Runtime's speed (GoogLeNet b8, one thread:
inception3b's 32 -> 96 layer 8.6 ms against 4.0). Here pointwise.py's register tile runs over the
window directly: the batch is copied once, zero-padded, then for kernel row kh the (kw, c) inputs
of an output pixel are one contiguous run of KW*C in the padded image, and neighbouring output
pixels' runs are sW*C apart, so a tile of P pixels x 2L output channels reads them in place
(k = (kh, (kw, c)), the tile's two loop levels). No column buffer, and bias + relu are applied
on the registers before the tile's rows are stored (into a concat slice too).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .blocked import blocked_geometry
from .llvm_vectors import HOST_VECTOR_BYTES as _VECTOR_BYTES
from .epilogue import channel_rows, row_span
from .pointwise import _make_gemm_tile, _tile_1x2, _tile_6x2, pack_panels, padded_bias, panel_width  # noqa: F401

_tile_4x2 = _make_gemm_tile(4, 2)
_tile_3x2 = _make_gemm_tile(3, 2)
_tile_2x2 = _make_gemm_tile(2, 2)

#: Input channels up to which a stride-1 window takes this path (the ``winograd`` pass takes 3x3
#: layers from 64 channels each side).
MAX_CHANNELS = 64
#: ... and the least output width: a row of Wo pixels runs as tiles of 6 pixels, then at most two of
#: 2-4 (or one of 1). At 7x7 (GoogLeNet's inception5, 4 + 3) it measured 0.93-1.15x im2col + GEMM on
#: one thread (CPU time, three runs), 1.09-1.21x on two.
MIN_WIDTH = 7

# Indices into blocked_geometry's vector.
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _O, _HP, _WP = range(15)


def takes(weight_shape: tuple[int, ...], stride, dilation, groups: int, activation: str | None, out_width: int,
          dtype: np.dtype) -> bool:
    """Whether an inference conv (not Winograd's) runs here: a window wider than 1x1, stride 1,
    undilated, ungrouped, at most MAX_CHANNELS inputs, whole panels of outputs, at least
    MIN_WIDTH output columns, relu or none."""
    o, c, kh, kw = weight_shape
    return (kh * kw > 1 and tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and c <= MAX_CHANNELS and o % panel_width(dtype) == 0 and out_width >= MIN_WIDTH
            and activation in (None, "relu"))


def pack_window(weight: np.ndarray) -> np.ndarray:
    """The (O, C, KH, KW) weight as pointwise.py's panels of its (O, KH*KW*C) (kh, kw, c) matrix."""
    o = weight.shape[0]
    return pack_panels(np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1))


def padded_size(geo: np.ndarray) -> int:
    """Elements of the padded copy of the batch."""
    return int(geo[_N] * geo[_HP] * geo[_WP] * geo[_C])


def scratch_elements(x_shape: tuple[int, ...], pads) -> int:
    """The scratch :func:`window_forward` needs for an x of ``x_shape`` (N, H, W, C)."""
    n, h, w, c = x_shape
    (pt, pb), (pl, pr) = pads
    return n * (h + pt + pb) * (w + pl + pr) * c


@njit(parallel=True, cache=True, _nrt=False)
def _pad_batch(x, geo, xp):  # pragma: no cover - compiled
    """xp (N, Hp, Wp, C) = x (N, H, W, C) zero-padded, flat, parallel over padded rows."""
    N, H, W, C, Hp, Wp, pt, pl = geo[_N], geo[_H], geo[_W], geo[_C], geo[_HP], geo[_WP], geo[_PT], geo[_PL]
    for r in prange(N * Hp):
        n = r // Hp
        h = r % Hp - pt
        row = xp[r * Wp * C : (r + 1) * Wp * C]
        if h < 0 or h >= H:
            row[:] = 0
        else:
            row[: pl * C] = 0
            row[pl * C : (pl + W) * C] = x[(n * H + h) * W * C : (n * H + h + 1) * W * C]
            row[(pl + W) * C :] = 0


@njit(parallel=True, cache=True, _nrt=False)
def window_bias_relu(x, geo, panels, bias, relu, y, ldy, xp):  # pragma: no cover - compiled
    """y (N*Ho*Wo pixels; pixel q at y[q*ldy : q*ldy + O]) = f(conv(x (N, H, W, C), W) + bias),
    f relu (relu true) or the identity; stride along W any, along H any. panels: pack_window;
    bias: padded_bias; O a whole number of panels; xp: padded_size scratch. Output rows (n, oh)
    are split over the threads."""
    _pad_batch(x, geo, xp)
    N, C, Ho, Wo, KH, KW, sh, sw, O, Hp, Wp = (geo[_N], geo[_C], geo[_HO], geo[_WO], geo[_KH], geo[_KW], geo[_SH],
                                               geo[_SW], geo[_O], geo[_HP], geo[_WP])
    L = _VECTOR_BYTES // x.itemsize
    VO = 2 * L
    NB = O // VO
    K = KW * C
    step = sw * C
    for task in prange(N * Ho):
        n = task // Ho
        oh = task % Ho
        base = (n * Hp + oh * sh) * Wp * C
        out = task * Wo * ldy
        for nb in range(NB):
            v0 = nb * KH * K * VO
            n0 = nb * VO
            ow = 0
            # 6-pixel tiles, then the rest as at most two tiles of 2-4 (7 = 4 + 3, not 6 + 1: a
            # one-pixel tile runs 2 FMAs per broadcast)
            while Wo - ow >= 6 and Wo - ow != 7:
                _tile_6x2(xp, base + ow * step, step, Wp * C, KH, panels, v0, K, bias, n0, relu, y, out + ow * ldy + n0,
                          ldy)
                ow += 6
            if Wo - ow >= 4 and Wo - ow != 5:
                _tile_4x2(xp, base + ow * step, step, Wp * C, KH, panels, v0, K, bias, n0, relu, y, out + ow * ldy + n0,
                          ldy)
                ow += 4
            if Wo - ow >= 3:
                _tile_3x2(xp, base + ow * step, step, Wp * C, KH, panels, v0, K, bias, n0, relu, y, out + ow * ldy + n0,
                          ldy)
                ow += 3
            if Wo - ow >= 2:
                _tile_2x2(xp, base + ow * step, step, Wp * C, KH, panels, v0, K, bias, n0, relu, y, out + ow * ldy + n0,
                          ldy)
                ow += 2
            if ow < Wo:
                _tile_1x2(xp, base + ow * step, step, Wp * C, KH, panels, v0, K, bias, n0, relu, y, out + ow * ldy + n0,
                          ldy)


def window_forward(x: np.ndarray, weight_shape: tuple[int, ...], stride, pads, panels: np.ndarray, bias: np.ndarray,
                   relu: bool, out: np.ndarray, scratch: np.ndarray) -> None:
    """out (N, Ho, Wo, O: unit stride along O, pixels evenly strided) = f(conv(x) + bias): x
    (N, H, W, C, C-contiguous), the weight as ``panels`` (:func:`pack_window`) of ``weight_shape``,
    ``bias`` as padded_bias; ``pads`` ((top, bottom), (left, right)); scratch at least
    :func:`padded_size` elements of the dtype."""
    geo = blocked_geometry(x.shape, weight_shape, stride, pads, out.shape)
    if x.shape[0] == 0:
        return
    flat, ldy = row_span(channel_rows(out, out.shape[-1], "conv"))
    window_bias_relu(x.reshape(-1), geo, panels, bias, relu, flat, ldy, scratch[: padded_size(geo)])
