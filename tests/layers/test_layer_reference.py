"""Every registered layer type, through every example of tests/layer_cases.py:

- its reference forward gives the shape its shape rule promises;
- its reference backward agrees with float64 central differences (along a random direction,
  for every input and parameter);
- the CPU backend's op agrees with the reference, forward and backward, in float64;
- its PyTorch twin agrees with the reference, forward and backward (when torch is installed;
  CI installs it, see .ci/run).

Batchnorm runs in training and in eval mode; dropout in eval mode (its training mask is random:
tests/runtime/ops/test_op_misc.py checks it).
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.layers import LAYER_TYPES
from cnnlang.runtime.ops import Context, internal_shape, op_class, to_internal, to_user
from layer_cases import BATCH, CASES
from layer_cases import layer_example as setup

EXAMPLES = [
    pytest.param(op, index, train, id=f"{op}-{index}{'-train' if train else ''}")
    for op, case in CASES.items()
    for index in range(len(case.examples))
    for train in ((False, True) if op == "batchnorm" else (False,))
]


def test_every_layer_type_has_examples():
    assert sorted(cls.op for cls in LAYER_TYPES if not CASES.get(cls.op, None) or not CASES[cls.op].examples) == []


def close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-11, err_msg=what)


@pytest.mark.parametrize("op, index, train", EXAMPLES)
def test_reference_forward_follows_the_shape_rule(op, index, train):
    layer, shapes, inputs, params, buffers = setup(op, index)
    y = layer.forward_reference(inputs, params, buffers, train)
    assert y.shape == (BATCH, *layer.output_shape(shapes))


@pytest.mark.parametrize("op, index, train", EXAMPLES)
def test_reference_backward_against_central_differences(op, index, train):
    layer, shapes, inputs, params, buffers = setup(op, index)
    rng = np.random.default_rng(1)
    weights = rng.standard_normal(layer.forward_reference(inputs, params, buffers, train).shape)

    def loss(xs, ps):
        return float(np.sum(layer.forward_reference(xs, ps, buffers, train) * weights))

    dxs, dparams = layer.backward_reference(inputs, params, buffers, weights, train)
    assert set(dparams) == set(params)
    eps = 1e-6
    for i, x in enumerate(inputs):
        v = rng.standard_normal(x.shape)
        up = [*inputs[:i], x + eps * v, *inputs[i + 1 :]]
        down = [*inputs[:i], x - eps * v, *inputs[i + 1 :]]
        numeric = (loss(up, params) - loss(down, params)) / (2 * eps)
        assert np.sum(dxs[i] * v) == pytest.approx(numeric, rel=1e-6, abs=1e-7), f"input {i}"
    for name, p in params.items():
        v = rng.standard_normal(p.shape)
        numeric = (loss(inputs, {**params, name: p + eps * v}) - loss(inputs, {**params, name: p - eps * v})) / (2 * eps)
        assert dparams[name].shape == p.shape
        assert np.sum(dparams[name] * v) == pytest.approx(numeric, rel=1e-6, abs=1e-7), name


@pytest.mark.parametrize("op, index, train", EXAMPLES)
def test_cpu_op_against_the_reference(op, index, train):
    layer, shapes, inputs, params, buffers = setup(op, index)
    out_shape = layer.output_shape(shapes)
    node = op_class(op, "cpu")(layer, [internal_shape(s) for s in shapes], internal_shape(out_shape), np.float64)
    node.params = {name: p.copy() for name, p in params.items()}
    node.grads = {name: np.full(p.shape, np.nan) for name, p in params.items()}
    node.buffers = {name: b.copy() for name, b in buffers.items()}
    out = np.empty((BATCH, *internal_shape(out_shape)))
    node.forward([to_internal(x) for x in inputs], out, Context(train=train))
    close(to_user(out), layer.forward_reference(inputs, params, buffers, train), f"{op} forward")
    dy = np.random.default_rng(2).standard_normal(out.shape)
    dxs, dparams = layer.backward_reference(inputs, params, buffers, to_user(dy), train)
    for i, dx in enumerate(node.backward(to_internal(to_user(dy)))):
        close(to_user(dx), dxs[i], f"{op} input gradient {i}")
    for name, grad in dparams.items():
        close(node.grads[name], grad, f"{op} gradient of {name}")


@pytest.mark.parametrize("op, index, train", EXAMPLES)
def test_torch_twin_against_the_reference(op, index, train):
    torch = pytest.importorskip("torch")
    layer, shapes, inputs, params, buffers = setup(op, index)
    module = layer.torch_module(shapes).to(torch.float64).train(train)
    with torch.no_grad():
        for name, value in params.items():
            getattr(module, layer.torch_names.get(name, name)).copy_(torch.from_numpy(value))
        for name, value in buffers.items():
            getattr(module, name).copy_(torch.from_numpy(value))
    xs = [torch.from_numpy(x.copy()).requires_grad_(True) for x in inputs]
    y = module(*xs)
    close(y.detach().numpy(), layer.forward_reference(inputs, params, buffers, train), f"{op} forward")
    dy = np.random.default_rng(2).standard_normal(y.shape)
    y.backward(torch.from_numpy(dy))
    dxs, dparams = layer.backward_reference(inputs, params, buffers, dy, train)
    for i, x in enumerate(xs):
        close(x.grad.numpy(), dxs[i], f"{op} input gradient {i}")
    for name, grad in dparams.items():
        close(getattr(module, layer.torch_names.get(name, name)).grad.numpy(), grad, f"{op} gradient of {name}")
