"""Single-thread twins of the parallel kernels (runtime/kernels/cpu/serial.py) against the plain
NumPy references of test_kernel_conv.py and test_kernel_pool.py (NCHW, written from the
definitions), and bit for bit against the parallel kernels they are compiled from (the same loops
in the same order). The twins are forward-only (optimised inference): no gradients to check."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnlang.runtime.kernels.cpu import serial
from cnnlang.runtime.kernels.cpu.activation import RELU, SIGMOID, TANH
from cnnlang.runtime.kernels.cpu.blocked import scratch_size as blocked_scratch_size
from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, pack_weight
from cnnlang.runtime.kernels.cpu.direct import direct_forward, scratch_size
from cnnlang.runtime.kernels.cpu.epilogue import NONE, bias_activation
from cnnlang.runtime.kernels.cpu.im2col import im2col
from cnnlang.runtime.kernels.cpu.planar import planar_forward
from cnnlang.runtime.kernels.cpu.pool import _avgpool_forward, _maxpool_values, avgpool_forward, maxpool_values
from test_kernel_conv import nchw, nhwc, ref_conv, ref_geometry
from test_kernel_pool import geometry, out_size, ref_avgpool, ref_maxpool

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64])
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def test_twins_are_serial_and_cached_apart():
    for twin, kernel in [(serial.im2col_serial, im2col), (serial.direct_forward_serial, direct_forward),
                         (serial.planar_forward_serial, planar_forward),
                         (serial.avgpool_forward_serial, _avgpool_forward),
                         (serial.maxpool_values_serial, _maxpool_values)]:  # fmt: skip
        assert kernel.targetoptions["parallel"] and not twin.targetoptions.get("parallel")
        assert twin.py_func.__code__ is kernel.py_func.__code__
        assert twin.py_func.__qualname__ != kernel.py_func.__qualname__  # its own cache file
        assert twin.targetoptions.get("error_model") == kernel.targetoptions.get("error_model")


@st.composite
def conv_cases(draw, stride1=False):
    c, o = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (1, 1) if stride1 else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if stride1 else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = ((draw(st.integers(0, 3)), draw(st.integers(0, 3))), (draw(st.integers(0, 3)), draw(st.integers(0, 3))))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    assume(h + sum(pads[0]) >= dilation[0] * (kh - 1) + 1 and w + sum(pads[1]) >= dilation[1] * (kw - 1) + 1)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(1, 3))
    x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw)), rng.standard_normal(o)
    return x, wt, b, stride, pads, dilation


@SETTINGS
@given(conv_cases(), DTYPES)
def test_im2col_serial_columns_give_the_reference_conv(case, dtype):
    x, w, b, stride, pads, dilation = case
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    xs = nhwc(x).astype(dtype)
    y = np.empty((x.shape[0], oh, ow, w.shape[0]), dtype)
    plan = ConvWorkspace().plan(xs, w, stride, pads, dilation, 1, y)
    col = np.full(plan.rows * ow * plan.K, np.nan, dtype)
    serial.im2col_serial(xs.reshape(-1), col, plan.geo, 0, plan.rows)
    parallel = np.full_like(col, np.nan)
    im2col(xs.reshape(-1), parallel, plan.geo, 0, plan.rows)
    np.testing.assert_array_equal(col, parallel)
    out = col.reshape(-1, plan.K) @ pack_weight(w.astype(dtype)).T + b.astype(dtype)
    reference = ref_conv(x.astype(dtype), w.astype(dtype), b.astype(dtype), stride, pads, dilation, 1)
    np.testing.assert_allclose(nchw(out.reshape(y.shape)), reference, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 10)


def check_conv_twin(name, case, dtype, has_bias):
    """The conv kernel ``name`` (direct.py's or planar.py's forward, bias in the kernel) as its serial
    twin against the reference conv, and bit for bit against the parallel kernel on two threads'
    scratch. Returns False where the plan does not take that kernel."""
    x, w, b, stride, pads, dilation = case
    oh, ow = ref_geometry(x.shape, w.shape, stride, pads, dilation)
    xs, wd, bd = nhwc(x).astype(dtype), w.astype(dtype), b.astype(dtype)
    y = np.full((x.shape[0], oh, ow, w.shape[0]), np.nan, dtype)
    plan = ConvWorkspace().plan(xs, wd, stride, pads, dilation, 1, y)
    if name == "direct":
        twin, kernel, geo = serial.direct_forward_serial, direct_forward, plan.direct_geo
        size = scratch_size(geo)
    else:
        if not plan.planar:
            return False
        twin, kernel, geo = serial.planar_forward_serial, planar_forward, plan.blocked_geo
        size = blocked_scratch_size(geo, xs.itemsize)
    bias = bd if has_bias else np.empty(0, dtype)
    twin(xs.reshape(-1), wd.reshape(-1), bias, has_bias, y.reshape(-1), geo, np.empty((1, size), dtype))
    reference = ref_conv(xs.transpose(0, 3, 1, 2), wd, bd if has_bias else None, stride, pads, dilation, 1)
    np.testing.assert_allclose(nchw(y), reference, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 10)
    parallel = np.full_like(y, np.nan)
    kernel(xs.reshape(-1), wd.reshape(-1), bias, has_bias, parallel.reshape(-1), geo, np.empty((2, size), dtype))
    np.testing.assert_array_equal(y, parallel)
    return True


@SETTINGS
@given(conv_cases(stride1=True), DTYPES, st.booleans())
def test_direct_forward_serial_matches_the_reference_conv(case, dtype, has_bias):
    check_conv_twin("direct", case, dtype, has_bias)


@st.composite
def one_channel_cases(draw):
    """conv_cases with one input channel, stride 1 along W and no dilation: planar.py's forward."""
    x, w, b, _, pads, _ = draw(conv_cases(stride1=True))
    assume(x.shape[1] == 1)
    return x, w, b, (draw(st.integers(1, 3)), 1), pads, (1, 1)


@SETTINGS
@given(one_channel_cases(), DTYPES, st.booleans())
def test_planar_forward_serial_matches_the_reference_conv(case, dtype, has_bias):
    # optimised inference's one-channel conv at small work (LeNet-5's c1 at batch 1); not a 1x1 conv or a
    # window over the whole unpadded image (GEMMs on x's view)
    assume(check_conv_twin("planar", case, dtype, has_bias))


@SETTINGS
@given(geometry(), st.integers(1, 3), st.integers(1, 4), DTYPES, st.integers(0, 99))
def test_maxpool_values_serial_matches_reference(geo, n, c, dtype, seed):
    (h, w), k, s, p, d, ceil = geo
    x = np.random.default_rng(seed).integers(-3, 4, (n, c, h, w)).astype(dtype)  # ties: the first maximum wins
    oh, ow = out_size(h, k[0], s[0], p[0], d[0], ceil), out_size(w, k[1], s[1], p[1], d[1], ceil)
    out = np.empty((n, oh, ow, c), dtype)
    serial.maxpool_values_serial(nhwc(x), out, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    ref, _ = ref_maxpool(x, k, s, p, d, ceil)
    np.testing.assert_array_equal(nchw(out), ref)
    parallel = np.empty_like(out)
    maxpool_values(nhwc(x), parallel, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1])
    np.testing.assert_array_equal(out, parallel)


@SETTINGS
@given(geometry(dilation=False), st.integers(1, 3), st.integers(1, 4), st.booleans(), DTYPES, st.integers(0, 99))
def test_avgpool_forward_serial_matches_reference(geo, n, c, count_pad, dtype, seed):
    (h, w), k, s, p, _, ceil = geo
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(dtype)
    oh, ow = out_size(h, k[0], s[0], p[0], 1, ceil), out_size(w, k[1], s[1], p[1], 1, ceil)
    out = np.empty((n, oh, ow, c), dtype)
    serial.avgpool_forward_serial(nhwc(x), out, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    reference = ref_avgpool(x, k, s, p, ceil, count_pad)
    np.testing.assert_allclose(nchw(out), reference, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    parallel = np.empty_like(out)
    avgpool_forward(nhwc(x), parallel, k[0], k[1], s[0], s[1], p[0], p[1], count_pad)
    np.testing.assert_array_equal(out, parallel)


REFERENCE_ACTIVATIONS = {NONE: lambda v: v, RELU: lambda v: np.maximum(v, 0), TANH: np.tanh,
                         SIGMOID: lambda v: 1 / (1 + np.exp(-v))}  # fmt: skip


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", [NONE, RELU, TANH, SIGMOID])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("strided", [False, True])
def test_bound_bias_activation_matches_numpy(dtype, kind, with_bias, strided):
    rng = np.random.default_rng(kind + 2 + 7 * with_bias)
    parent = rng.standard_normal((9, 11)).astype(dtype)
    y = parent[:, 2:7] if strided else parent[:, :5].copy()  # a channel slice of a concat buffer
    bias = rng.standard_normal(5).astype(dtype) if with_bias else None
    outside = parent[:, [0, 1, 7, 8, 9, 10]].copy()
    expected = REFERENCE_ACTIVATIONS[kind](y.astype(np.float64) + (0 if bias is None else bias))
    parallel = parent.copy()[:, 2:7] if strided else y.copy()  # the same layout: the same code path
    bias_activation(parallel, bias, kind)
    serial.bind_bias_activation(y, bias, kind)()
    np.testing.assert_allclose(y, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
    np.testing.assert_array_equal(y, parallel)
    np.testing.assert_array_equal(parent[:, [0, 1, 7, 8, 9, 10]], outside)  # only the slice is written
