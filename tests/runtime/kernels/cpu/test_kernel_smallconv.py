"""The direct inference conv with bias + relu fused (runtime/kernels/cpu/smallconv.py) against the
plain NumPy reference of test_kernel_conv.py.

The cases cover output widths whose rows end in each tile tail (6-, 4-, 3-, 2- and 1-pixel tiles),
one and several panels of output channels (pointwise.panel_width: 16 float32 columns with AVX2, 32
with AVX-512), windows 3x3, 5x5 and 1x3, symmetric, asymmetric and no padding, stride 2, one image
and several, relu or none, a missing bias, and an output that is a channel slice of a wider array (a
concat buffer).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu.pointwise import panel_width
from cnnlang.runtime.kernels.cpu.smallconv import pack_window, padded_bias, scratch_elements, takes, window_forward
from test_kernel_conv import nchw, nhwc, ref_conv, ref_geometry


def run(x, w, b, stride, pads, relu, dtype, out=None):
    """x, w in NCHW / OIHW float64; returns the NCHW result (of ``out``, a channels-last array)."""
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, (1, 1))
    if out is None:
        out = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    x4 = nhwc(x).astype(dtype)
    scratch = np.full(scratch_elements(x4.shape, pads), np.nan, dtype)
    window_forward(x4, w.shape, stride, pads, pack_window(w.astype(dtype)), padded_bias(b, w.shape[0], dtype), relu,
                   out, scratch)
    return nchw(out)


def reference(x, w, b, stride, pads, relu):
    y = ref_conv(x, w, b, stride, pads, (1, 1), 1)
    return np.maximum(y, 0) if relu else y


CASES = [
    # (n, c, h, w, o in panels, kh, kw, stride, pads)
    (2, 3, 5, 13, 1, 3, 3, (1, 1), ((1, 1), (1, 1))),  # 13 = 6 + 4 + 3
    (1, 5, 6, 11, 2, 3, 3, (1, 1), ((1, 1), (1, 1))),  # 11 = 6 + 3 + 2
    (3, 2, 4, 9, 1, 5, 5, (1, 1), ((2, 2), (2, 2))),  # 9 = 6 + 3
    (1, 4, 7, 8, 1, 1, 3, (1, 1), ((0, 0), (2, 0))),  # 8 = 6 + 2, asymmetric
    (2, 3, 9, 14, 1, 3, 3, (2, 2), ((0, 1), (1, 0))),  # stride 2, 7 = 4 + 3
    (1, 7, 3, 4, 3, 3, 2, (1, 1), ((0, 0), (0, 0))),  # 3, unpadded
    (1, 3, 4, 5, 1, 3, 3, (1, 1), ((1, 1), (1, 1))),  # 5 = 3 + 2
    (2, 2, 3, 3, 1, 3, 3, (1, 1), ((0, 0), (0, 0))),  # 1
    (1, 2, 3, 10, 1, 3, 3, (1, 1), ((1, 1), (1, 1))),  # 10 = 6 + 4
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_matches_reference(dtype, case, relu):
    n, c, h, wd, panels, kh, kw, stride, pads = case
    o = panels * panel_width(dtype)
    rng = np.random.default_rng(n + c + h + wd + o)
    x = rng.standard_normal((n, c, h, wd)).astype(dtype).astype(np.float64)
    w = rng.standard_normal((o, c, kh, kw)).astype(dtype).astype(np.float64)
    b = rng.standard_normal(o).astype(dtype).astype(np.float64) if relu else None
    got = run(x, w, b, stride, pads, relu, dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, reference(x, w, b, stride, pads, relu), rtol=tolerance, atol=tolerance)


def test_writes_only_its_channel_slice():
    rng = np.random.default_rng(3)
    o = panel_width(np.float32)
    x = rng.standard_normal((2, 3, 6, 10))
    w = rng.standard_normal((o, 3, 3, 3)).astype(np.float32).astype(np.float64)
    b = rng.standard_normal(o)
    buffer = np.full((2, 6, 10, o + 24), 7.0, np.float32)
    got = run(x, w, b, (1, 1), ((1, 1), (1, 1)), True, np.float32, out=buffer[..., 8 : 8 + o])
    np.testing.assert_allclose(got, reference(x.astype(np.float32), w, b, (1, 1), ((1, 1), (1, 1)), True),
                               rtol=1e-5, atol=1e-5)
    assert (buffer[..., :8] == 7).all() and (buffer[..., 8 + o :] == 7).all()


def test_the_rule():
    three = ((96, 32, 3, 3), (1, 1), (1, 1), 1, "relu", 28, np.float32)
    assert takes(*three)
    assert not takes((96, 128, 3, 3), *three[1:])  # many channels: Winograd or im2col
    assert not takes((40, 32, 3, 3), *three[1:])  # not whole panels
    assert not takes((96, 32, 1, 1), *three[1:])  # 1x1: pointwise.py
    assert takes(*three[:5], 7, np.float32)
    assert not takes(*three[:5], 6, np.float32)  # narrower than measured
    assert not takes(three[0], (2, 2), *three[2:])
