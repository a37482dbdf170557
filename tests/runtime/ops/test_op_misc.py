"""The pooling, activation and normalisation ops (runtime/ops/pool.py, activation.py, norm.py)
driven as the executor drives them: bound layers, channels-last arrays, preallocated outputs.

Each case runs through the op and is compared, in the user's channels-first layout, with the
layer type's own NumPy reference (``forward_reference``, in cnnlang/layers/; itself checked against
finite differences and PyTorch in tests/layers/test_layer_reference.py), in float32 and float64.
Every case's backward is checked by float64 central differences through the op itself, and the
Op protocol's promises are checked: grads are overwritten, ``need_input_grad`` is honoured,
buffers move in place, dropout follows the seed.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.layers import REGISTRY
from cnnlang.runtime.ops.activation import ActivationOp, SoftmaxOp
from cnnlang.runtime.ops.base import Context, Op, internal_shape, to_internal, to_user
from cnnlang.runtime.ops.norm import BatchNormOp, DropoutOp, LRNOp
from cnnlang.runtime.ops.pool import AvgPoolOp, GlobalAvgPoolOp, MaxPoolOp
from gradcheck import central_difference

OP_CLASSES: dict[str, type[Op]] = {
    name: cls
    for cls in (MaxPoolOp, AvgPoolOp, GlobalAvgPoolOp, ActivationOp, SoftmaxOp, BatchNormOp, DropoutOp, LRNOp)
    for name in cls.ops
}

# (op, positional arguments, keyword arguments, per-example input shape in the user's layout)
CASES = [
    ("maxpool", [2], {}, (3, 6, 7)),
    ("maxpool", [3], {"stride": 2, "pad": 1, "ceil": True}, (2, 7, 6)),
    ("maxpool", [(3, 2)], {"stride": (1, 2), "dilation": (2, 1), "pad": (1, 0)}, (2, 7, 5)),
    ("maxpool", [2], {"stride": 1, "dilation": 2, "ceil": True}, (2, 9)),
    ("avgpool", [3], {"stride": 2, "pad": 1, "ceil": True}, (2, 7, 6)),
    ("avgpool", [3], {"stride": 2, "pad": 1, "ceil": True, "count_pad": False}, (2, 7, 6)),
    ("avgpool", [3], {"stride": 2, "pad": 1, "ceil": True}, (3, 8)),
    ("globalavgpool", [], {}, (3, 4, 5)),
    ("globalavgpool", [], {}, (3, 7)),
    ("relu", [], {}, (3, 4, 4)),
    ("tanh", [], {}, (5,)),
    ("sigmoid", [], {}, (2, 6)),
    ("softmax", [], {}, (4, 3, 3)),
    ("softmax", [], {}, (3, 5)),
    ("softmax", [], {}, (10,)),
    ("batchnorm", [], {}, (3, 4, 4)),
    ("batchnorm", [], {"affine": False, "momentum": 0.3}, (3, 5)),
    ("batchnorm", [], {"eps": 1e-3}, (6,)),
    ("lrn", [], {"size": 3, "alpha": 0.5, "beta": 0.75, "k": 1.0}, (5, 3, 3)),
    ("lrn", [], {"size": 4, "alpha": 2.0, "beta": 1.5, "k": 2.0}, (6,)),
    ("dropout", [0.4], {}, (3, 4, 4)),
]
IDS = [f"{op}-{'x'.join(map(str, shape))}-{i}" for i, (op, _, _, shape) in enumerate(CASES)]


def build(op, positional, keywords, shape, dtype=np.float64, seed=0):
    layer = REGISTRY[op].bind(list(positional), dict(keywords))
    out_shape = layer.output_shape([shape])
    node = OP_CLASSES[op](layer, [internal_shape(shape)], internal_shape(out_shape), dtype)
    rng = np.random.default_rng(seed)
    for name, s in layer.param_shapes([shape]).items():
        node.params[name] = (rng.standard_normal(s) + (1.0 if name == "gamma" else 0.0)).astype(dtype)
        node.grads[name] = np.full(s, np.nan, dtype)
    for name, s in layer.buffer_shapes([shape]).items():
        node.buffers[name] = (np.zeros(s) if name == "running_mean" else np.ones(s)).astype(dtype)
    return layer, node, out_shape


def run(node, x, train=False, seed=0):
    """Forward a batch in the user's layout; returns the output in the user's layout."""
    out = np.empty((x.shape[0], *node.out_shape), node.dtype)
    node.forward([to_internal(x.astype(node.dtype))], out, Context(train=train, rng=np.random.default_rng(seed)))
    return to_user(out)


def back(node, dy_user):
    (dx,) = node.backward(to_internal(dy_user.astype(node.dtype)))
    return None if dx is None else to_user(dx)


def sample(op, shape, batch, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    if op == "maxpool":  # distinct values: no ties, so the max is differentiable
        x = rng.permutation(batch * int(np.prod(shape))).reshape(batch, *shape) * 0.1
    else:
        x = rng.standard_normal((batch, *shape)) * 2
        if op == "relu":
            x[np.abs(x) < 1e-3] = 0.5
    return x.astype(dtype)


# ---- the reference: each layer's own oracle ---------------------------------------------------


def reference(layer, node, x, train):
    """``LayerType.forward_reference`` (plain NumPy, channels first) on float64 copies of the op's
    parameters and buffers."""
    as64 = lambda arrays: {name: np.asarray(a, np.float64) for name, a in arrays.items()}  # noqa: E731
    return layer.forward_reference([x.astype(np.float64)], as64(node.params), as64(node.buffers), train)


# ---- the cases ------------------------------------------------------------------------------


def test_every_op_is_implemented_once_and_is_a_layer():
    names = [name for cls in set(OP_CLASSES.values()) for name in cls.ops]
    assert sorted(names) == sorted(
        ["maxpool", "avgpool", "globalavgpool", "relu", "tanh", "sigmoid", "softmax", "batchnorm", "dropout", "lrn"]
    )
    assert all(name in REGISTRY and REGISTRY[name].op == name for name in names)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, positional, keywords, shape", CASES, ids=IDS)
def test_forward_matches_reference(op, positional, keywords, shape, dtype):
    layer, node, out_shape = build(op, positional, keywords, shape, dtype)
    x = sample(op, shape, 3, seed=1, dtype=dtype)
    train = op == "batchnorm"
    out = run(node, x, train=train)
    assert out.shape == (3, *out_shape) and out.dtype == dtype
    tol = 2e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, reference(layer, node, x.astype(np.float64), train), rtol=tol, atol=tol)


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("op, positional, keywords, shape", CASES, ids=IDS)
def test_backward_finite_differences(op, positional, keywords, shape, train):
    layer, node, out_shape = build(op, positional, keywords, shape)
    rng = np.random.default_rng(7)
    x = sample(op, shape, 2, seed=3)
    weights = rng.standard_normal((2, *out_shape))
    if "running_var" in node.buffers:  # eval mode then normalises by something else than 0, 1
        node.buffers["running_mean"][:] = rng.standard_normal(node.buffers["running_mean"].shape)
        node.buffers["running_var"][:] = rng.random(node.buffers["running_var"].shape) + 0.5

    # A fixed seed per evaluation: dropout draws the same mask every time.
    def loss():
        return float((run(node, x, train, seed=11) * weights).sum())

    loss()
    dx = back(node, weights)
    grads = {name: g.copy() for name, g in node.grads.items()}
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-5, atol=1e-7)
    for name, g in grads.items():
        np.testing.assert_allclose(g, central_difference(loss, node.params[name]), rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("op, positional, keywords, shape", CASES, ids=IDS)
def test_backward_overwrites_grads_and_honours_need_input_grad(op, positional, keywords, shape):
    _, node, out_shape = build(op, positional, keywords, shape)
    x = sample(op, shape, 2, seed=5)
    dy = np.random.default_rng(6).standard_normal((2, *out_shape))
    run(node, x, train=True)
    first = back(node, dy)
    grads = {name: g.copy() for name, g in node.grads.items()}
    second = back(node, dy)  # overwritten, not accumulated
    np.testing.assert_array_equal(first, second)
    for name, g in node.grads.items():
        np.testing.assert_array_equal(g, grads[name])
    node.need_input_grad = [False]
    for g in node.grads.values():
        g[...] = np.nan
    assert node.backward(to_internal(dy)) == [None]
    for name, g in node.grads.items():  # parameter gradients are still written
        np.testing.assert_array_equal(g, grads[name])


# ---- op-specific behaviour --------------------------------------------------------------------


def test_maxpool_handles_changing_batch_sizes():
    layer, node, _ = build("maxpool", [2], {}, (2, 4, 4))
    for batch in (3, 1, 4):
        x = sample("maxpool", (2, 4, 4), batch, seed=batch)
        np.testing.assert_array_equal(run(node, x), reference(layer, node, x, False))
        assert back(node, np.ones((batch, 2, 2, 2))).shape == (batch, 2, 4, 4)


def test_batchnorm_moves_running_buffers_in_place_and_eval_uses_them():
    layer, node, _ = build("batchnorm", [], {"momentum": 0.5}, (2, 3))
    running_mean, running_var = node.buffers["running_mean"], node.buffers["running_var"]
    x = sample("batchnorm", (2, 3), 4, seed=9)
    run(node, x, train=True)
    assert node.buffers["running_mean"] is running_mean and node.buffers["running_var"] is running_var
    np.testing.assert_allclose(running_mean, 0.5 * x.mean(axis=(0, 2)))
    np.testing.assert_allclose(running_var, 0.5 + 0.5 * x.transpose(1, 0, 2).reshape(2, -1).var(axis=1, ddof=1))
    before = running_mean.copy(), running_var.copy()
    out = run(node, x, train=False)
    np.testing.assert_array_equal(running_mean, before[0])
    np.testing.assert_allclose(out, reference(layer, node, x, False))


def test_batchnorm_training_needs_more_than_one_value_per_channel():
    _, node, _ = build("batchnorm", [], {}, (4,))
    with pytest.raises(ValueError, match="more than one value per channel"):
        run(node, np.ones((1, 4)), train=True)
    run(node, np.ones((1, 4)), train=False)  # fine in eval mode


def test_dropout_mask_follows_the_seed_and_backward_reuses_it():
    _, node, _ = build("dropout", [0.5], {}, (4, 5, 5))
    x = sample("dropout", (4, 5, 5), 8, seed=1)
    a, b, c = (run(node, x, train=True, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    kept = a != 0
    assert 0.4 < kept.mean() < 0.6
    np.testing.assert_allclose(a[kept], 2 * x[kept])
    dx = back(node, np.ones_like(x))  # the mask of the last forward (seed 4)
    np.testing.assert_array_equal(dx, np.where(c != 0, 2.0, 0.0))
    # The same seed gives the same mask in float32 (the draws are float64 either way).
    _, node32, _ = build("dropout", [0.5], {}, (4, 5, 5), np.float32)
    np.testing.assert_array_equal(run(node32, x, train=True, seed=3) != 0, kept)


def test_dropout_is_the_identity_in_eval_mode():
    _, node, _ = build("dropout", [0.9], {}, (7,))
    x = sample("dropout", (7,), 3, seed=2)
    np.testing.assert_array_equal(run(node, x, train=False), x)
    dy = np.arange(21.0).reshape(3, 7)
    np.testing.assert_array_equal(back(node, dy), dy)


def test_ops_refuse_an_output_shape_that_disagrees_with_the_layer():
    layer = REGISTRY["maxpool"].bind([2], {})
    with pytest.raises(ValueError, match="output shape"):
        MaxPoolOp(layer, [(4, 4, 3)], (3, 3, 3), np.float64)
