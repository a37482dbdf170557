"""The convolution op (runtime/ops/conv.py) driven as the executor drives it: bound ``conv`` and
``conv1d`` layers, channels-last arrays, preallocated outputs.

The reference here gathers every window with index arrays from an explicitly zero-padded input
(before/after padding per axis, taken from the layer's own ``padding_of``, so ``same`` padding may
be asymmetric) and contracts it with the weights per group, in the user's channels-first layout.
Backward is checked by float64 central differences through the op itself, and the Op protocol's
promises are checked: grads are overwritten, ``need_input_grad`` is honoured, fixed layers get no
weight gradient.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.layers import REGISTRY
from cnnlang.layers.base import Symbol
from cnnlang.runtime.ops import op_class
from cnnlang.runtime.ops.base import Context, internal_shape, to_internal, to_user
from cnnlang.runtime.ops.conv import ConvOp
from gradcheck import central_difference

# (op, positional arguments, keyword arguments, per-example input shape in the user's layout)
CASES = [
    ("conv", [4, 3], {"pad": 1}, (3, 6, 7)),
    ("conv", [4, 3], {"stride": 2, "pad": "same"}, (2, 7, 6)),  # pads H (1, 1), W (0, 1)
    ("conv", [3, 4], {"pad": "same"}, (2, 5, 6)),  # pads (1, 2) on both axes
    ("conv", [4, 3], {"pad": 2, "dilation": 2, "groups": 2, "bias": False}, (4, 6, 6)),
    ("conv", [6, (3, 1)], {"stride": (2, 1), "pad": (1, 0), "groups": 3}, (3, 7, 4)),  # depthwise x2
    ("conv", [5, 3], {"stride": 2, "pad": "same", "groups": 5, "bias": False}, (5, 6, 6)),  # depthwise, pads (0, 1)
    ("conv", [5, 1], {}, (3, 4, 5)),  # pointwise: a plain GEMM
    ("conv", [4, 1], {"stride": 2}, (3, 5, 5)),  # strided 1x1 (a ResNet shortcut)
    ("conv", [2, (2, 3)], {"stride": (3, 2), "pad": (2, 1), "dilation": (1, 2)}, (2, 7, 8)),
    ("conv1d", [4, 5], {"stride": 2, "pad": "same"}, (3, 9)),  # pads (1, 2)
    ("conv1d", [4, 3], {"pad": 2, "dilation": 2, "groups": 2}, (4, 8)),
    ("conv1d", [3, 1], {"bias": False}, (2, 6)),
    ("conv1d", [4, 3], {"pad": "same", "groups": 4}, (4, 7)),  # depthwise
]
IDS = [f"{op}-{'x'.join(map(str, shape))}-{i}" for i, (op, _, _, shape) in enumerate(CASES)]


def build(op, positional, keywords, shape, dtype=np.float64, seed=0):
    keywords = {k: Symbol(v) if isinstance(v, str) else v for k, v in keywords.items()}
    layer = REGISTRY[op].bind(list(positional), keywords)
    out_shape = layer.output_shape([shape])
    node = ConvOp(layer, [internal_shape(shape)], internal_shape(out_shape), dtype)
    rng = np.random.default_rng(seed)
    for name, s in layer.param_shapes([shape]).items():
        node.params[name] = rng.standard_normal(s).astype(dtype)
        node.grads[name] = np.full(s, np.nan, dtype)
    return layer, node, out_shape


def run(node, x):
    out = np.full((x.shape[0], *node.out_shape), np.nan, node.dtype)
    node.forward([to_internal(x.astype(node.dtype))], out, Context())
    return to_user(out)


def back(node, dy_user):
    (dx,) = node.backward(to_internal(dy_user.astype(node.dtype)))
    return None if dx is None else to_user(dx)


def reference(layer, params, x):
    """N x C x ... → N x O x ..., by gathering each window from the zero-padded input."""
    pads = layer.padding_of(x.shape[1:])
    w = params["weight"]
    kernel, stride, dilation = w.shape[2:], layer.stride, layer.dilation
    if x.ndim == 3:  # 1-D as height 1
        x, w, pads = x[:, :, None], w[:, :, None], ((0, 0), *pads)
        kernel, stride, dilation = (1, *kernel), (1, *stride), (1, *dilation)
    stride = stride * 2 if len(stride) == 1 else stride
    dilation = dilation * 2 if len(dilation) == 1 else dilation
    n, c, h, wd = x.shape
    padded = np.zeros((n, c, h + sum(pads[0]), wd + sum(pads[1])))
    padded[:, :, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd] = x
    oh = (padded.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (padded.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    rows = np.arange(oh)[:, None] * stride[0] + np.arange(kernel[0])[None] * dilation[0]  # OH x KH
    cols = np.arange(ow)[:, None] * stride[1] + np.arange(kernel[1])[None] * dilation[1]  # OW x KW
    windows = padded[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # N x C x OH x OW x KH x KW
    g = layer.groups
    o, cg = w.shape[:2]
    windows = windows.reshape(n, g, cg, oh, ow, *kernel)
    out = np.einsum("ngcijab,gocab->ngoij", windows, w.reshape(g, o // g, cg, *kernel)).reshape(n, o, oh, ow)
    if "bias" in params:
        out = out + params["bias"][None, :, None, None]
    return out if layer.op == "conv" else out[:, :, 0]


@pytest.mark.parametrize("op, positional, keywords, shape", CASES, ids=IDS)
def test_forward_matches_reference(op, positional, keywords, shape):
    layer, node, out_shape = build(op, positional, keywords, shape)
    x = np.random.default_rng(1).standard_normal((2, *shape))
    got = run(node, x)
    assert got.shape == (2, *out_shape)
    np.testing.assert_allclose(got, reference(layer, node.params, x), rtol=1e-12, atol=1e-12)
    # float32 gives the same to float32 precision (|terms| ~ 1, at most 27 of them per output)
    layer32, node32, _ = build(op, positional, keywords, shape, dtype=np.float32)
    got32 = run(node32, x)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, reference(layer32, {k: v.astype(np.float64) for k, v in node32.params.items()}, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op, positional, keywords, shape", CASES, ids=IDS)
def test_backward_matches_finite_differences(op, positional, keywords, shape):
    layer, node, _ = build(op, positional, keywords, shape)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, *shape))
    r = rng.standard_normal(run(node, x).shape)  # L = sum(r * y)
    run(node, x)
    dx = back(node, r)

    def loss():
        return float(np.sum(r * run(node, x)))

    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    for name in node.params:
        np.testing.assert_allclose(node.grads[name], central_difference(loss, node.params[name]), rtol=1e-6, atol=1e-8, err_msg=name)


def test_moving_average_through_conv1d_op():
    # 18 sensor readings 1.00 ... 2.70; s_t = x_t*w0 + x_t-1*w-1 + ... + x_t-6*w-6 with
    # w0..w-6 = 0.5, 0.4, 0.04, 0.02, 0.02, 0.01, 0.01. Cross-correlation: the kernel holds them
    # oldest first.
    layer, node, out_shape = build("conv1d", [1, 7], {"bias": False}, (1, 18))
    w = [0.5, 0.4, 0.04, 0.02, 0.02, 0.01, 0.01]  # w0, w-1, ..., w-6
    node.params["weight"][...] = np.array(w[::-1]).reshape(1, 1, 7)
    x = np.round(1.0 + 0.1 * np.arange(18), 2)
    y = run(node, x.reshape(1, 1, 18))
    assert out_shape == (1, 12)
    expected = [sum(x[t - k] * w[k] for k in range(7)) for t in range(6, 18)]
    np.testing.assert_allclose(y[0, 0], expected, atol=1e-12)
    assert y[0, 0, 0] == pytest.approx(1.527, abs=1e-12)  # s6 by hand


def test_protocol_grads_overwritten_and_input_grad_skipped():
    layer, node, _ = build("conv", [4, 3], {"pad": 1, "stride": 2}, (2, 5, 5))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 5, 5))
    dy = rng.standard_normal(run(node, x).shape)
    dx1 = back(node, dy)
    grads1 = {k: v.copy() for k, v in node.grads.items()}
    for v in node.grads.values():
        v[...] = 123.0  # stale values must not leak into the next backward
    dx2 = back(node, dy)
    np.testing.assert_array_equal(dx1, dx2)
    for k in grads1:
        np.testing.assert_array_equal(node.grads[k], grads1[k])
    node.need_input_grad = [False]
    assert node.backward(to_internal(dy)) == [None]
    np.testing.assert_array_equal(node.grads["weight"], grads1["weight"])
    # another batch size re-sizes the scratch
    x4 = rng.standard_normal((1, 2, 5, 5))
    node.need_input_grad = [True]
    y4 = run(node, x4)
    np.testing.assert_allclose(y4, reference(layer, node.params, x4), rtol=1e-12, atol=1e-12)
    assert back(node, np.ones_like(y4)).shape == x4.shape


def test_fixed_layers_get_no_weight_gradient():
    for keywords in ({"frozen": True}, {"weights": [[0.0, 1.0], [2.0, 3.0]]}):
        layer, node, _ = build("conv", [2, 2], dict(keywords), (1, 4, 4))
        assert not layer.trainable
        x = np.random.default_rng(4).standard_normal((2, 1, 4, 4))
        y = run(node, x)
        dx = back(node, np.ones_like(y))
        assert np.isnan(node.grads["weight"]).all()  # untouched
        assert dx.shape == x.shape and np.isfinite(dx).all()


def test_registry_and_shape_check():
    assert op_class("conv") is ConvOp and op_class("conv1d") is ConvOp
    layer = REGISTRY["conv"].bind([4, 3], {})
    with pytest.raises(ValueError, match="output shape"):
        ConvOp(layer, [(5, 5, 2)], (5, 5, 4), np.float32)
