"""The fused depthwise + 1x1 kernel (runtime/kernels/cpu/depthwise_pointwise.py) against the
NumPy reference of the convolution tests (a depthwise conv, then a 1x1 conv, in float64), and bit
for bit against the two kernels it fuses run one after the other (the same sums in the same
order): chunks that end inside an output row, part tiles, half and partial weight panels, a
strided output (a concat's channel slice), few chunks split over the panels, one thread."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from cnnlang.runtime.kernels.cpu import depthwise_pointwise
from cnnlang.runtime.kernels.cpu.activation import RELU
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace
from cnnlang.runtime.kernels.cpu.depthwise import depthwise_forward
from cnnlang.runtime.kernels.cpu.depthwise_pointwise import bind_depthwise_pointwise, chunk_pixels, fits
from cnnlang.runtime.kernels.cpu.epilogue import NONE
from cnnlang.runtime.kernels.cpu.gemm_epilogue import bind_pointwise
from cnnlang.runtime.kernels.cpu.pointwise import ROWS
from test_kernel_conv import nchw, nhwc, ref_conv, ref_geometry

# (N, C, H, W, stride, pads, dilation, O): output rows crossed by chunks, edges on every side,
# stride 2, asymmetric and no padding, dilation 2; O a whole panel (16 in float32), a half panel
# (24 = 16 + 8), a part panel (40, 5 outputs), many panels
CASES = [
    (2, 16, 9, 11, (1, 1), ((1, 1), (1, 1)), (1, 1), 40),
    (3, 32, 13, 10, (2, 2), ((0, 1), (1, 0)), (1, 1), 24),
    (1, 16, 7, 7, (1, 1), ((1, 1), (1, 1)), (1, 1), 16),
    (2, 48, 12, 12, (1, 2), ((2, 2), (2, 2)), (2, 2), 5),
    (1, 64, 5, 6, (1, 1), ((0, 0), (0, 0)), (1, 1), 200),
]


def reference(x, dw, db, stride, pads, dilation, relu1, pw, pb, relu2):
    """NCHW float64: relu?(1x1 conv(relu?(depthwise conv(x) + db)) + pb)."""
    mid = ref_conv(x, dw, db, stride, pads, dilation, x.shape[1])
    mid = np.maximum(mid, 0) if relu1 else mid
    out = ref_conv(mid, pw[:, :, None, None], pb, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    return np.maximum(out, 0) if relu2 else out


def fused(x, dw, db, stride, pads, dilation, relu1, pw, pb, relu2, dtype, wider=0):
    """The kernel on NCHW float64 arrays cast to ``dtype``; ``wider``: extra output channels on
    each side, so that the output is a strided channel slice (they must stay NaN)."""
    n, o = x.shape[0], pw.shape[0]
    oh_ow = ref_geometry(x.shape, dw.shape, stride, pads, dilation)
    full = np.full((n * oh_ow[0] * oh_ow[1], o + 2 * wider), np.nan, dtype)
    y2 = full[:, wider : wider + o]
    cast = (lambda a: None if a is None else a.astype(dtype))
    bind_depthwise_pointwise(nhwc(x).astype(dtype), cast(dw), cast(db), stride, pads, dilation, relu1, cast(pw),
                             cast(pb), relu2, y2, oh_ow, ConvWorkspace())()
    assert np.isnan(full[:, :wider]).all() and np.isnan(full[:, wider + o :]).all()
    return nchw(y2.reshape(n, *oh_ow, o))


def separate(x, dw, db, stride, pads, dilation, relu1, pw, pb, relu2, dtype):
    """The two kernels the fused one stands for: depthwise.py's, then gemm_epilogue.py's GEMM."""
    oh, ow = ref_geometry(x.shape, dw.shape, stride, pads, dilation)
    n, c = x.shape[:2]
    mid = np.empty((n, oh, ow, c), dtype)
    depthwise_forward(nhwc(x).astype(dtype), dw.astype(dtype), None if db is None else db.astype(dtype), stride,
                      pads, dilation, mid, RELU if relu1 else NONE)
    out = np.empty((n * oh * ow, pw.shape[0]), dtype)
    bind_pointwise(mid.reshape(-1, c), pw.astype(dtype), None if pb is None else pb.astype(dtype), out,
                   RELU if relu2 else NONE, ConvWorkspace())()
    return nchw(out.reshape(n, oh, ow, -1))


def arrays(case, seed=0, bias=True):
    n, c, h, w, stride, pads, dilation, o = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    dw, pw = rng.standard_normal((c, 1, 3, 3)), rng.standard_normal((o, c)) / np.sqrt(c)
    db, pb = (rng.standard_normal(c), rng.standard_normal(o)) if bias else (None, None)
    return x, dw, db, stride, pads, dilation, pw, pb


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("relu1, relu2, bias", [(True, True, True), (False, False, False), (True, False, True)])
def test_matches_reference_float64(case, relu1, relu2, bias):
    x, dw, db, stride, pads, dilation, pw, pb = arrays(case, bias=bias)
    got = fused(x, dw, db, stride, pads, dilation, relu1, pw, pb, relu2, np.float64, wider=3)
    np.testing.assert_allclose(got, reference(x, dw, db, stride, pads, dilation, relu1, pw, pb, relu2),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_same_bits_as_the_two_kernels(dtype, case):
    x, dw, db, stride, pads, dilation, pw, pb = arrays(case, seed=1)
    got = fused(x, dw, db, stride, pads, dilation, True, pw, pb, True, dtype)
    assert np.array_equal(got, separate(x, dw, db, stride, pads, dilation, True, pw, pb, True, dtype))


def test_chunks_across_images_rows_and_panels_on_one_and_two_threads(monkeypatch):
    """Chunks smaller than an image's row (so most begin and end inside one, and cross from one
    image to the next) and more panels than tasks (the panels split over the threads)."""
    monkeypatch.setattr(depthwise_pointwise, "CHUNK_BYTES", 0)
    monkeypatch.setattr(depthwise_pointwise, "MIN_CHUNK_PIXELS", 6)
    case = (3, 16, 5, 13, (1, 1), ((1, 1), (1, 1)), (1, 1), 72)
    x, dw, db, stride, pads, dilation, pw, pb = arrays(case, seed=2)
    want = reference(x, dw, db, stride, pads, dilation, True, pw, pb, False)
    previous = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            got = fused(x, dw, db, stride, pads, dilation, True, pw, pb, False, np.float64)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    finally:
        numba.set_num_threads(previous)
    few = (1, 16, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1), 130)  # few chunks, 9 panels: split over the threads
    x, dw, db, stride, pads, dilation, pw, pb = arrays(few, seed=3)
    want = reference(x, dw, db, stride, pads, dilation, False, pw, pb, True)
    for big_weight in (1 << 40, 0):  # two chunks of 6 pixels; one of all 9 (a "big" weight)
        monkeypatch.setattr(depthwise_pointwise, "BIG_WEIGHT_BYTES", big_weight)
        got = fused(x, dw, db, stride, pads, dilation, False, pw, pb, True, np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_chunks_are_whole_blocks_of_rows_in_about_a_fifth_of_l2():
    assert chunk_pixels(10**6, 32, 64, 4) == 768 and chunk_pixels(10**6, 512, 512, 4) == 48
    assert chunk_pixels(10**6, 1024, 1024, 8) == 48
    assert all(chunk_pixels(10**6, c, 16, 4) % ROWS == 0 for c in (16, 24, 40, 100, 3000))
    # a weight past L2 with few pixels (MobileNet's last 1x1 at batch 1 and 2): one chunk, not one per
    # 48; whole blocks of the host's ROWS (6 with AVX2, 12 with AVX-512)
    assert chunk_pixels(49, 1024, 1024, 4) == -(-49 // ROWS) * ROWS
    assert chunk_pixels(98, 1024, 1024, 4) == -(-98 // ROWS) * ROWS
    assert chunk_pixels(392, 1024, 1024, 4) == 48 and chunk_pixels(49, 512, 512, 4) == 48


def test_an_empty_batch_writes_nothing():
    y2 = np.zeros((0, 8), np.float32)
    bind_depthwise_pointwise(np.zeros((0, 4, 4, 16), np.float32), np.zeros((16, 1, 3, 3), np.float32), None, (1, 1),
                             ((1, 1), (1, 1)), (1, 1), False, np.zeros((8, 16), np.float32), None, False, y2, (4, 4),
                             ConvWorkspace())()


def test_the_rule_and_what_it_refuses():
    assert fits(32, (3, 3), 1, np.float32) and fits(16, (3, 3), 1, np.float64)
    assert not fits(32, (5, 5), 1, np.float32) and not fits(32, (3, 3), 2, np.float32)
    assert not fits(12, (3, 3), 1, np.float32)
    x = np.zeros((1, 4, 4, 12), np.float32)
    with pytest.raises(ValueError, match="not a 3x3 depthwise conv over whole vectors"):
        bind_depthwise_pointwise(x, np.zeros((12, 1, 3, 3), np.float32), None, (1, 1), ((1, 1), (1, 1)), (1, 1), False,
                                 np.zeros((8, 12), np.float32), None, False, np.zeros((16, 8), np.float32), (4, 4),
                                 ConvWorkspace())
    x = np.zeros((1, 4, 4, 16), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        bind_depthwise_pointwise(x, np.zeros((16, 1, 3, 3), np.float32), None, (1, 1), ((1, 1), (1, 1)), (1, 1), False,
                                 np.zeros((8, 16), np.float32), None, False, np.zeros((15, 8), np.float32), (4, 4),
                                 ConvWorkspace())
