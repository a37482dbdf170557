"""Max pooling's per-pixel inference values (runtime/kernels/cpu/maxpool_pixels.py) against the
plain NumPy reference of test_kernel_pool.py, and bitwise against maxpool_forward (the same first
maximum, +0 or -0, and the same first NaN), on a coarse grid of values with signed zeros and
NaNs. The geometries of test_kernel_pool.py (any kernel, stride, padding, dilation, ceil mode)
reach both of its loops: 3-wide window rows inside the image at stride 1 in one pass, every
other window tap by tap.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu.maxpool_pixels import maxpool_pixels, takes
from test_kernel_pool import SETTINGS, geometry, nchw, nhwc, out_size, ref_maxpool, run_maxpool

GRID = np.array([-2.0, -1.0, -0.0, 0.0, 1.0, 2.0, np.nan])


def check(x, k, s, p, d, ceil, dtype):
    n, c, h, w = x.shape
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.full((n, oh, ow, c), 7.0, dtype)
    maxpool_pixels(nhwc(x), out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    ref, _ = ref_maxpool(np.nan_to_num(x, nan=9.0), k, s, p, d, ceil)  # NaN ranks above all
    ref[ref == 9.0] = np.nan
    np.testing.assert_array_equal(nchw(out), ref)
    with_argmax, _ = run_maxpool(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(np.signbit(out), np.signbit(with_argmax))
    np.testing.assert_array_equal(out, with_argmax)


@SETTINGS
@given(geometry(), st.integers(1, 2), st.integers(1, 9), st.sampled_from([np.float32, np.float64]), st.integers(0, 99))
def test_matches_reference_and_maxpool_forward(geo, n, c, dtype, seed):
    (h, w), k, s, p, d, ceil = geo
    x = np.random.default_rng(seed).choice(GRID, (n, c, h, w)).astype(dtype)
    check(x, k, s, p, d, ceil, dtype)


@pytest.mark.parametrize("k, s, p, d", [((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 3), (1, 1), (0, 1), (1, 2))])
def test_three_wide_rows_in_one_pass(k, s, p, d):
    # GoogLeNet's inception pools (3x3, stride 1, pad 1), on an image wide enough for interior
    # windows; and dilated along W
    x = np.random.default_rng(2).choice(GRID, (2, 17, 6, 9)).astype(np.float32)
    check(x, k, s, p, d, True, np.float32)


def test_the_rule():
    assert takes(192, 28, 1) and takes(64, 56, 2)
    assert not takes(32, 28, 1)  # few channels: pool.py's separable kernel
    assert not takes(832, 7, 1)  # narrow, stride 1
    assert takes(832, 7, 2)
