"""fc and flatten on the GPU (runtime/cuda/ops/dense.py) against the layers' reference forward and
backward in float64 (spatial and flat inputs, with and without bias), a float64 finite-difference
check along random directions, the fused activation into a slice of a wider output, float32, and
the Op protocol (no input gradient where none is wanted)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

from cnnlang.layers import REGISTRY
from cnnlang.runtime.kernels.cuda.reduce import column_sums
from cnnlang.runtime.ops import Context, internal_shape, op_class, to_internal, to_user

BATCH = 3


def build(backend, op, positional, keywords, shape, dtype=np.float64, seed=0):
    layer = REGISTRY[op].bind(list(positional), dict(keywords))
    out_shape = layer.output_shape([shape])
    node = op_class(op, backend)(layer, [internal_shape(shape)], internal_shape(out_shape), dtype, backend)
    rng = np.random.default_rng(seed)
    params = {k: rng.standard_normal(s) for k, s in layer.param_shapes([shape]).items()}
    node.params = {k: backend.to_device(v.astype(dtype)) for k, v in params.items()}
    node.grads = {k: backend.to_device(np.full(v.shape, np.nan, dtype)) for k, v in params.items()}
    x = rng.standard_normal((BATCH, *shape))
    return layer, node, params, x


def forward(backend, node, x, out=None):
    out = backend.to_device(np.full((x.shape[0], *node.out_shape), np.nan, node.dtype)) if out is None else out
    node.forward([backend.to_device(to_internal(x.astype(node.dtype)))], out, Context(train=True))
    return to_user(backend.to_host(out))


def backward(backend, node, dy):
    (dx,) = node.backward(backend.to_device(dy.astype(node.dtype)))
    return None if dx is None else to_user(backend.to_host(dx))


@pytest.mark.parametrize(
    "op, positional, keywords, shape",
    [("fc", [4], {}, (2, 3, 2)), ("fc", [3], {"bias": False}, (5,)), ("flatten", [], {}, (2, 3, 2)),
     ("fc", [2], {}, (3, 4))],  # fmt: skip
    ids=["fc-spatial", "fc-flat-no-bias", "flatten", "fc-1d-signal"],
)
def test_against_the_layer_reference(cuda_backend, op, positional, keywords, shape):
    layer, node, params, x = build(cuda_backend, op, positional, keywords, shape)
    y = forward(cuda_backend, node, x)
    np.testing.assert_allclose(y, layer.forward_reference([x], params, {}), rtol=1e-12, atol=1e-12)
    dy = np.random.default_rng(1).standard_normal(y.shape)
    (dx_ref,), grads_ref = layer.backward_reference([x], params, {}, dy)
    np.testing.assert_allclose(backward(cuda_backend, node, dy), dx_ref, rtol=1e-12, atol=1e-12)
    for name, grad in grads_ref.items():
        np.testing.assert_allclose(cuda_backend.to_host(node.grads[name]), grad, rtol=1e-12, atol=1e-12, err_msg=name)


def test_fc_backward_against_finite_differences(cuda_backend):
    layer, node, params, x = build(cuda_backend, "fc", [3], {}, (2, 2, 2), seed=2)
    rng = np.random.default_rng(3)
    r = rng.standard_normal(forward(cuda_backend, node, x).shape)
    dx = backward(cuda_backend, node, r)
    eps = 1e-6
    v = rng.standard_normal(x.shape)
    numeric = (np.sum(r * forward(cuda_backend, node, x + eps * v)) - np.sum(r * forward(cuda_backend, node, x - eps * v))) / (2 * eps)
    assert np.sum(dx * v) == pytest.approx(numeric, rel=1e-7, abs=1e-9)
    for name, value in params.items():
        grad = cuda_backend.to_host(node.grads[name])
        v = rng.standard_normal(value.shape)
        losses = []
        for sign in (1, -1):
            cuda_backend.upload(value + sign * eps * v, node.params[name])
            losses.append(np.sum(r * forward(cuda_backend, node, x)))
        cuda_backend.upload(value, node.params[name])
        assert np.sum(grad * v) == pytest.approx((losses[0] - losses[1]) / (2 * eps), rel=1e-7, abs=1e-9), name


@pytest.mark.parametrize("activation, f", [("relu", lambda v: np.maximum(v, 0)), ("sigmoid", lambda v: 1 / (1 + np.exp(-v)))])
def test_fc_with_fused_activation_into_a_slice_in_float32(cuda_backend, activation, f):
    layer, node, params, x = build(cuda_backend, "fc", [4], {}, (3, 2, 2), dtype=np.float32, seed=4)
    node.activation = activation
    parent = np.random.default_rng(5).standard_normal((BATCH, 7)).astype(np.float32)
    device = cuda_backend.to_device(parent)
    node.forward([cuda_backend.to_device(to_internal(x.astype(np.float32)))], device[:, 2:6], Context())
    got = cuda_backend.to_host(device)
    np.testing.assert_allclose(got[:, 2:6], f(layer.forward_reference([x], params, {})), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[:, :2], parent[:, :2])
    np.testing.assert_array_equal(got[:, 6:], parent[:, 6:])


def test_no_input_gradient_where_none_is_wanted(cuda_backend):
    layer, node, params, x = build(cuda_backend, "fc", [2], {}, (2, 2, 2), seed=6)
    node.need_input_grad = [False]
    dy = np.ones((BATCH, 2))
    forward(cuda_backend, node, x)
    assert backward(cuda_backend, node, dy) is None
    np.testing.assert_allclose(cuda_backend.to_host(node.grads["bias"]), dy.sum(axis=0))


def test_column_sums_over_several_row_bands():
    """The bias gradient's reduction: 200 rows make 6 bands summed in a second pass."""
    a = np.random.default_rng(8).standard_normal((200, 3))
    out = cuda.to_device(np.full(3, np.nan))
    column_sums(cuda.to_device(a), out)
    np.testing.assert_allclose(out.copy_to_host(), a.sum(axis=0), rtol=1e-12, atol=1e-12)
