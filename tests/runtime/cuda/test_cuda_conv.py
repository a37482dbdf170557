"""Convolution on the GPU: the im2col / col2im kernels against index arithmetic and against each
other (col2im is im2col's adjoint), and the conv ops (runtime/cuda/ops/conv.py) on every path
(im2col + GEMM, implicit GEMM forward, direct) against the layer's own reference forward and backward (float64), a float64
finite-difference check along random directions, float32 against the same reference, output
into a channel slice with a fused activation, chunked column buffers, and the Op protocol.

Shapes are tiny: the simulator runs every GPU thread as Python."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from cnnlang.errors import UsageError
from cnnlang.layers import REGISTRY
from cnnlang.layers.base import Symbol
from cnnlang.runtime.kernels.cuda.conv import conv_method
from cnnlang.runtime.kernels.cuda.im2col import col2im, col2im_threads, im2col, launch
from cnnlang.runtime.kernels.cuda.views import DeviceWorkspace
from cnnlang.runtime.ops import Context, internal_shape, op_class, to_internal, to_user

# (op, positional, keywords, per-example input shape (user layout), method)
CASES = [
    ("conv", [3, 3], {"stride": 2, "pad": "same"}, (2, 5, 4), "im2col"),  # asymmetric pads
    ("conv", [4, (3, 2)], {"pad": 1, "dilation": (2, 1), "groups": 2, "bias": False}, (4, 5, 4), "im2col"),
    ("conv", [2, (3, 2)], {"pad": 1, "dilation": (2, 1), "groups": 2, "bias": False}, (4, 5, 4), "direct"),
    ("conv", [2, (2, 3)], {"stride": (1, 2), "pad": (1, 0), "groups": 2}, (2, 4, 5), "direct"),  # depthwise
    ("conv", [4, (3, 2)], {"stride": (2, 1), "pad": "same", "dilation": (1, 2), "groups": 2}, (2, 5, 4), "implicit"),
    ("conv", [3, 1], {}, (2, 3, 3), "im2col"),  # pointwise: a plain GEMM
    ("conv", [2, 1], {"stride": 2, "groups": 2}, (2, 3, 3), "im2col"),  # strided 1x1, grouped
    ("conv1d", [2, 3], {"stride": 2, "pad": "same", "dilation": 2}, (2, 7), "im2col"),
    ("conv1d", [2, 3], {"pad": 1, "groups": 2}, (2, 5), "direct"),
]
IDS = [f"{op}-{method}-{i}" for i, (op, _, _, _, method) in enumerate(CASES)]
BATCH = 2


def bind(op, positional, keywords, shape):
    keywords = {k: Symbol(v) if isinstance(v, str) else v for k, v in keywords.items()}
    return REGISTRY[op].bind(list(positional), keywords)


def build(backend, layer, shape, params, method, dtype=np.float64):
    """The CUDA op with device copies of ``params`` (user layout) and NaN-filled gradients."""
    out_shape = layer.output_shape([shape])
    node = op_class(layer.op, backend)(layer, [internal_shape(shape)], internal_shape(out_shape), dtype, backend)
    node.method = method
    node.params = {k: backend.to_device(v.astype(dtype)) for k, v in params.items()}
    node.grads = {k: backend.to_device(np.full(v.shape, np.nan, dtype)) for k, v in params.items()}
    return node, out_shape


def forward(backend, node, x, train=True):
    out = backend.to_device(np.full((x.shape[0], *node.out_shape), np.nan, node.dtype))
    node.forward([backend.to_device(to_internal(x.astype(node.dtype)))], out, Context(train=train))
    return to_user(backend.to_host(out))


def backward(backend, node, dy):
    (dx,) = node.backward(backend.to_device(to_internal(dy.astype(node.dtype))))
    return None if dx is None else to_user(backend.to_host(dx))


def example(layer, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((BATCH, *shape))
    params = {k: rng.standard_normal(s) * 0.5 for k, s in layer.param_shapes([shape]).items()}
    return x, params


@pytest.mark.parametrize("op, positional, keywords, shape, method", CASES, ids=IDS)
def test_conv_op_against_the_layer_reference(cuda_backend, op, positional, keywords, shape, method):
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape)
    node, _ = build(cuda_backend, layer, shape, params, method)
    y = forward(cuda_backend, node, x)
    np.testing.assert_allclose(y, layer.forward_reference([x], params, {}), rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    (dx_ref,), grads_ref = layer.backward_reference([x], params, {}, dy)
    np.testing.assert_allclose(backward(cuda_backend, node, dy), dx_ref, rtol=1e-12, atol=1e-12)
    for name, grad in grads_ref.items():
        np.testing.assert_allclose(cuda_backend.to_host(node.grads[name]), grad, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("case", [0, 3], ids=[IDS[0], IDS[3]])
def test_conv_backward_against_finite_differences(cuda_backend, case):
    """d/dt sum(r * conv(x + t v)) at t = 0 for random directions v of x, the weight and the bias."""
    op, positional, keywords, shape, method = CASES[case]
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape, seed=2)
    node, _ = build(cuda_backend, layer, shape, params, method)
    rng = np.random.default_rng(3)
    r = rng.standard_normal(forward(cuda_backend, node, x).shape)
    dx = backward(cuda_backend, node, r)
    eps = 1e-6

    def directional(loss, value, direction):
        return (loss(value + eps * direction) - loss(value - eps * direction)) / (2 * eps)

    v = rng.standard_normal(x.shape)
    numeric = directional(lambda xv: float(np.sum(r * forward(cuda_backend, node, xv))), x, v)
    assert np.sum(dx * v) == pytest.approx(numeric, rel=1e-7, abs=1e-9)
    for name, value in params.items():
        grad = cuda_backend.to_host(node.grads[name])

        def loss(p, name=name):
            cuda_backend.upload(p, node.params[name])
            return float(np.sum(r * forward(cuda_backend, node, x)))

        v = rng.standard_normal(value.shape)
        assert np.sum(grad * v) == pytest.approx(directional(loss, value, v), rel=1e-7, abs=1e-9), name


@pytest.mark.parametrize("case", [1, 2], ids=[IDS[1], IDS[2]])
def test_float32_forward_and_backward(cuda_backend, case):
    op, positional, keywords, shape, method = CASES[case]
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape, seed=4)
    node, _ = build(cuda_backend, layer, shape, params, method, dtype=np.float32)
    y = forward(cuda_backend, node, x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, layer.forward_reference([x], params, {}), rtol=1e-4, atol=1e-5)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    (dx_ref,), grads_ref = layer.backward_reference([x], params, {}, dy)
    np.testing.assert_allclose(backward(cuda_backend, node, dy), dx_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cuda_backend.to_host(node.grads["weight"]), grads_ref["weight"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [0, 3, 4, 7], ids=[IDS[0], IDS[3], IDS[4], IDS[7]])
def test_output_into_a_channel_slice_with_bias_and_relu(cuda_backend, case):
    """Optimised inference hands a channel slice of a concat buffer; the op writes only there,
    with the bias and the fused relu (and its column-order weight prepared once)."""
    op, positional, keywords, shape, method = CASES[case]
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape, seed=6)
    node, out_shape = build(cuda_backend, layer, shape, params, method)
    node.activation = "relu"
    node.prepare_weights()
    out_internal = internal_shape(out_shape)
    channels = out_internal[-1]
    parent = np.random.default_rng(7).standard_normal((BATCH, *out_internal[:-1], channels + 3))
    device = cuda_backend.to_device(parent)
    part = device[(slice(None),) * (device.ndim - 1) + (slice(1, 1 + channels),)]  # (device arrays take no ...)
    node.forward([cuda_backend.to_device(to_internal(x))], part, Context(train=False))
    got = cuda_backend.to_host(device)
    expected = np.maximum(to_internal(layer.forward_reference([x], params, {})), 0)
    np.testing.assert_allclose(got[..., 1 : 1 + channels], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(got[..., :1], parent[..., :1])
    np.testing.assert_array_equal(got[..., 1 + channels :], parent[..., 1 + channels :])


def test_chunked_columns_give_the_same_forward_and_backward(cuda_backend):
    """Chunks of 4 output rows (of 2 images x 3): the forward writes chunk by chunk, dW adds the
    chunks' partial products, col2im overwrites on an image's first chunk (both in the first)
    and adds after (image 1 in the second)."""
    op, positional, keywords, shape, _ = CASES[1]
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape, seed=8)
    node, _ = build(cuda_backend, layer, shape, params, "im2col")
    node.workspace = DeviceWorkspace(budget=1, min_pixels=4 * 5)  # Wo = 5
    y = forward(cuda_backend, node, x)
    np.testing.assert_allclose(y, layer.forward_reference([x], params, {}), rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(9).standard_normal(y.shape)
    (dx_ref,), grads_ref = layer.backward_reference([x], params, {}, dy)
    np.testing.assert_allclose(backward(cuda_backend, node, dy), dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cuda_backend.to_host(node.grads["weight"]), grads_ref["weight"], rtol=1e-12, atol=1e-12)


def test_protocol_grads_overwritten_and_input_grad_skipped(cuda_backend):
    op, positional, keywords, shape, method = CASES[0]
    layer = bind(op, positional, keywords, shape)
    x, params = example(layer, shape, seed=10)
    node, _ = build(cuda_backend, layer, shape, params, method)
    dy = np.random.default_rng(11).standard_normal(forward(cuda_backend, node, x).shape)
    backward(cuda_backend, node, dy)
    first = {k: cuda_backend.to_host(v) for k, v in node.grads.items()}
    for v in node.grads.values():
        cuda_backend.fill(v, 123.0)  # stale values must not leak into the next backward
    node.need_input_grad = [False]
    assert backward(cuda_backend, node, dy) is None
    for k, v in first.items():
        np.testing.assert_array_equal(cuda_backend.to_host(node.grads[k]), v)


def reference_im2col(x, geo, r0, rows):
    """Columns by index arithmetic on the zero-padded input, (pixel, (kh, kw, c)) order."""
    n, h, w, c, ho, wo, kh, kw, sh, sw, pt, pl, dh, dw, _ = geo
    padded = np.zeros((n, h + pt + kh * dh, w + pl + kw * dw, c))
    padded[:, pt : pt + h, pl : pl + w] = x
    col = []
    for row in range(r0, r0 + rows):
        for ow in range(wo):
            image, oh = divmod(row, ho)
            taps = [padded[image, oh * sh + i * dh, ow * sw + j * dw] for i in range(kh) for j in range(kw)]
            col.append(np.concatenate(taps))
    return np.array(col)


def test_im2col_against_index_arithmetic_and_col2im_is_its_adjoint():
    """N=2, 3x4 input, 3 channels, 2x3 kernel, stride (2, 1), pads top 1 / left 2 (bottom 1,
    right 1), dilation (1, 2); the chunk of output rows 1..2 of 2*2."""
    x = np.random.default_rng(12).standard_normal((2, 3, 4, 3))
    geo = (2, 3, 4, 3, 2, 2, 2, 3, 2, 1, 1, 2, 1, 2, 1)  # Ho = (3+2-1-1)//2+1, Wo = 4+3-4-1+1
    r0, rows, k = 1, 2, 18
    expected = reference_im2col(x, geo, r0, rows)
    col = cuda.to_device(np.full((rows * 2, k), np.nan))
    im2col[launch(rows * 2 * k)](cuda.to_device(x), col, geo, r0, rows)
    np.testing.assert_array_equal(col.copy_to_host(), expected)
    # <im2col(x), c> == <x, col2im(c)>: this chunk holds image 1's row 0 (overwritten) and image
    # 0's row 1 (added to the zeros there)
    values = np.random.default_rng(13).standard_normal((rows * 2, k))
    dx = cuda.to_device(np.zeros_like(x))
    col2im("d")[launch(col2im_threads(geo, r0, rows))](cuda.to_device(values), dx, geo, r0, rows)
    assert np.sum(expected * values) == pytest.approx(np.sum(x * dx.copy_to_host()), rel=1e-12)


def test_the_method_is_chosen_by_group_width_or_by_the_environment(monkeypatch):
    monkeypatch.delenv("CNNLANG_CUDA_CONV", raising=False)
    assert conv_method(32, 1, 1) == "direct"  # depthwise
    assert conv_method(2, 48, 64) == "im2col"  # AlexNet's groups: wide enough for GEMM tiles
    assert conv_method(1, 3, 8) == "im2col"
    monkeypatch.setenv("CNNLANG_CUDA_CONV", "implicit")
    assert conv_method(32, 1, 1) == "implicit"
    monkeypatch.setenv("CNNLANG_CUDA_CONV", "fastest")
    with pytest.raises(UsageError, match="CNNLANG_CUDA_CONV='fastest' is not one of auto, im2col, implicit, direct"):
        conv_method(1, 3, 8)


def test_an_empty_batch_gives_zero_gradients(cuda_backend):
    op, positional, keywords, shape, method = CASES[0]
    layer = bind(op, positional, keywords, shape)
    _, params = example(layer, shape)
    node, _ = build(cuda_backend, layer, shape, params, method)
    x = np.zeros((0, *shape))
    assert forward(cuda_backend, node, x).shape[0] == 0
    assert backward(cuda_backend, node, np.zeros((0, *layer.output_shape([shape])))).shape == x.shape
    for name in params:
        np.testing.assert_array_equal(cuda_backend.to_host(node.grads[name]), 0)
