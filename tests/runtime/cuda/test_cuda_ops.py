"""What the generic layer test (test_cuda_layers.py) does not reach: dropout's training mask,
batchnorm over several row chunks, add's fused activation and concat's
eliminated inputs on channel slices, and float32 against the CPU op. Shapes are tiny: the
simulator runs every thread as Python."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.layers import REGISTRY
from cnnlang.runtime.backend import CPU
from cnnlang.runtime.kernels.cpu import norm as cpu_norm
from cnnlang.runtime.kernels.cuda import norm, reduce
from cnnlang.runtime.ops import Context, internal_shape, op_class, to_internal, to_user
from cnnlang.runtime.ops.base import channel_slice


def make_op(backend, op, args, keywords, shapes, dtype=np.float64, seed=0):
    layer = REGISTRY[op].bind(list(args), dict(keywords))
    node = op_class(op, backend)(
        layer, [internal_shape(s) for s in shapes], internal_shape(layer.output_shape(shapes)), dtype, backend
    )
    rng = np.random.default_rng(seed)
    for name, shape in layer.param_shapes(shapes).items():
        node.params[name] = backend.to_device((rng.standard_normal(shape) + (name == "gamma")).astype(dtype))
        node.grads[name] = backend.to_device(np.full(shape, np.nan, dtype))
    for name, shape in layer.buffer_shapes(shapes).items():
        node.buffers[name] = backend.to_device((rng.random(shape) + 0.5).astype(dtype))
    return node


def forward(backend, node, xs, train=False, seed=0):
    out = backend.empty((xs[0].shape[0], *node.out_shape), node.dtype)
    ctx = Context(train=train, rng=backend.rng(seed))
    node.forward([backend.to_device(to_internal(x.astype(node.dtype))) for x in xs], out, ctx)
    return to_user(backend.to_host(out))


def backward(backend, node, dy):
    dxs = node.backward(backend.to_device(to_internal(dy)))
    return [None if dx is None else to_user(backend.to_host(dx)) for dx in dxs]


# ---- dropout ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_mask_is_seeded_scaled_and_reused_by_backward(cuda_backend, dtype):
    b = cuda_backend
    node = make_op(b, "dropout", [0.4], {}, [(3, 4, 4)], dtype)
    x = np.random.default_rng(1).standard_normal((4, 3, 4, 4)) + 5  # no zeros: the mask is out != 0
    out = forward(b, node, [x], train=True, seed=7)
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept].astype(dtype) / dtype(0.6), rtol=1e-6)
    assert abs(kept.mean() - 0.6) < 5 * np.sqrt(0.24 / kept.size)  # five standard deviations
    dy = np.random.default_rng(2).standard_normal(x.shape)
    (dx,) = backward(b, node, dy)
    np.testing.assert_allclose(dx, np.where(kept, dy.astype(dtype) / dtype(0.6), 0), rtol=1e-6)
    np.testing.assert_array_equal(forward(b, node, [x], train=True, seed=7), out)  # the same seed
    assert (forward(b, node, [x], train=True, seed=8) != 0).tolist() != kept.tolist()  # another seed
    np.testing.assert_array_equal(forward(b, node, [x], train=False), x.astype(dtype))  # eval: identity


def test_dropout_masks_differ_from_step_to_step_and_match_across_dtypes(cuda_backend):
    b = cuda_backend
    x = np.ones((2, 50))
    masks = {}
    for dtype in (np.float32, np.float64):
        node = make_op(b, "dropout", [0.5], {}, [(50,)], dtype)
        out = b.empty((2, 50), dtype)
        ctx = Context(train=True, rng=b.rng(3))
        steps = []
        for _ in range(2):
            node.forward([b.to_device(x.astype(dtype))], out, ctx)
            steps.append(b.to_host(out) != 0)
        assert steps[0].tolist() != steps[1].tolist()
        masks[dtype] = steps
    np.testing.assert_array_equal(masks[np.float32], masks[np.float64])


def test_philox_matches_the_known_answer(cuda_backend):
    """Random123's known-answer vector for Philox-4x32-10, counter (0, 0, 0, 0), key (0, 0):
    words 0x6627e8d5 0xe169c58d -> the double (a >> 5) * 2^26 + (b >> 6), over 2^53."""
    out = cuda_backend.empty((1,), np.float64)
    norm.dropout_apply(cuda_backend.to_device(np.ones(1)), 0, 0.0, 1.0, out)  # p = 0: kept, x * 1
    u = ((0x6627E8D5 >> 5) * 67108864.0 + (0xE169C58D >> 6)) / 9007199254740992.0
    kept_below = cuda_backend.empty((1,), np.float64)
    norm.dropout_apply(cuda_backend.to_device(np.ones(1)), 0, u, 1.0, kept_below)  # u >= u: kept
    dropped = cuda_backend.empty((1,), np.float64)
    norm.dropout_apply(cuda_backend.to_device(np.ones(1)), 0, np.nextafter(u, 1), 1.0, dropped)
    assert cuda_backend.to_host(out)[0] == 1 and cuda_backend.to_host(kept_below)[0] == 1
    assert cuda_backend.to_host(dropped)[0] == 0


# ---- reductions over several chunks -----------------------------------------------------------


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_over_several_chunks_equals_the_cpu_kernel(cuda_backend, train):
    b = cuda_backend
    rng = np.random.default_rng(4)
    rows, channels, chunk = 11, 3, 4  # chunks of 4, 4 and 3 rows
    x = rng.standard_normal((rows, channels)) * 3 + 10
    gamma, beta = rng.standard_normal(channels), rng.standard_normal(channels)
    host = {"rm": rng.standard_normal(channels), "rv": rng.random(channels) + 0.5}
    cpu = {k: v.copy() for k, v in host.items()}
    out, mean, invstd = np.empty_like(x), np.empty(channels), np.empty(channels)
    cpu_norm.batchnorm_forward(x, gamma, beta, cpu["rm"], cpu["rv"], 1e-5, 0.1, train, out, mean, invstd)
    dev = {k: b.to_device(v) for k, v in host.items()}
    d_out, d_mean, d_invstd = b.empty(x.shape, np.float64), *(b.empty((channels,), np.float64) for _ in range(2))
    partial = b.empty((reduce.chunks(rows, chunk), 2, channels), np.float64)
    args = b.to_device(x), b.to_device(gamma), b.to_device(beta)
    norm.batchnorm_forward(*args, dev["rm"], dev["rv"], 1e-5, 0.1, train, d_out, d_mean, d_invstd, partial, chunk)
    pairs = (d_out, out), (d_mean, mean), (d_invstd, invstd), (dev["rm"], cpu["rm"]), (dev["rv"], cpu["rv"])
    for device, expected in pairs:
        np.testing.assert_allclose(b.to_host(device), expected, rtol=1e-12)
    dy = rng.standard_normal(x.shape)
    dx, dgamma, dbeta = np.empty_like(x), np.empty(channels), np.empty(channels)
    cpu_norm.batchnorm_backward(x, dy, gamma, mean, invstd, train, dx, dgamma, dbeta)
    d_dx, d_dgamma, d_dbeta = b.empty(x.shape, np.float64), *(b.empty((channels,), np.float64) for _ in range(2))
    d_dy = b.to_device(dy)
    norm.batchnorm_backward(args[0], d_dy, args[1], d_mean, d_invstd, train, d_dx, d_dgamma, d_dbeta, partial, chunk)
    for device, expected in ((d_dx, dx), (d_dgamma, dgamma), (d_dbeta, dbeta)):
        np.testing.assert_allclose(b.to_host(device), expected, rtol=1e-10, atol=1e-12)


# ---- add and concat on channel slices ---------------------------------------------------------


@pytest.mark.parametrize("activation", [None, "relu", "tanh", "sigmoid"])
def test_add_fuses_its_activation_into_a_channel_slice(cuda_backend, activation):
    b = cuda_backend
    node = make_op(b, "add", [], {}, [(2, 3, 3)] * 3)
    node.activation = activation
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((2, 3, 3, 2)) for _ in range(3)]  # channels-last already
    parent = b.to_device(np.full((2, 3, 3, 5), 7.0))
    node.forward([b.to_device(x) for x in xs], channel_slice(parent, 1, 3), Context())
    total = xs[0] + xs[1] + xs[2]
    expected = {
        None: total, "relu": np.maximum(total, 0), "tanh": np.tanh(total), "sigmoid": 1 / (1 + np.exp(-total))
    }[activation]
    result = b.to_host(parent)
    np.testing.assert_allclose(result[..., 1:3], expected, rtol=1e-12)
    np.testing.assert_array_equal(np.delete(result, [1, 2], axis=-1), 7.0)  # the rest untouched


def test_channel_slices_index_as_real_device_arrays_do():
    """Real device arrays (not the simulator's, which wrap NumPy) index through Numba's
    dummyarray: it takes no Ellipsis, and a channel slice reshapes to rows x C only as a view of
    several extents, which DeviceNDArray.reshape refuses. The simulator hides that module,
    so it is loaded from its file (plain Python and NumPy)."""
    import importlib.util
    from pathlib import Path

    import numba_cuda

    path = Path(numba_cuda.__file__).parent / "numba" / "cuda" / "cudadrv" / "dummyarray.py"
    spec = importlib.util.spec_from_file_location("real_dummyarray", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Array = module.Array
    parent = Array.from_desc(0, (2, 3, 4, 5), (480, 160, 40, 8), 8)
    with pytest.raises(TypeError):
        parent[..., 1:3]
    part = channel_slice(parent, 1, 3)
    assert part.shape == (2, 3, 4, 2) and part.strides == (480, 160, 40, 8)
    rows, extents = part.reshape(-1, 2)
    assert rows.shape == (24, 2) and rows.strides == (40, 8)
    # ... but DeviceNDArray.reshape copies nothing and refuses a view of several extents (an H200
    # run showed it), so add's rows come from views.channel_rows, which builds them from strides
    assert extents != [part.extent]


def test_concat_skips_written_inputs_and_writes_into_a_slice(cuda_backend):
    b = cuda_backend
    node = make_op(b, "concat", [], {}, [(2, 3, 3), (3, 3, 3)])
    node.written = frozenset({0})  # input 0's producer wrote its slice already (eliminated concat)
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((2, 3, 3, 3))]
    parent = b.to_device(np.full((2, 3, 3, 7), -1.0))
    node.forward([b.to_device(x) for x in xs], channel_slice(parent, 1, 6), Context())
    result = b.to_host(parent)
    np.testing.assert_array_equal(result[..., 1:3], -1.0)  # written: not copied again
    np.testing.assert_array_equal(result[..., 3:6], xs[1])
    np.testing.assert_array_equal(result[..., [0, 6]], -1.0)
    dy = rng.standard_normal((2, 3, 3, 5))
    dxs = node.backward(b.to_device(dy))
    assert all(b.is_contiguous(dx) for dx in dxs)
    np.testing.assert_array_equal(b.to_host(dxs[0]), dy[..., :2])
    np.testing.assert_array_equal(b.to_host(dxs[1]), dy[..., 2:])
    node.need_input_grad = [False, True]
    assert node.backward(b.to_device(dy))[0] is None


# ---- float32 against the CPU op ---------------------------------------------------------------

FLOAT32_CASES = [
    ("maxpool", [3], {"stride": 2, "pad": 1, "ceil": True}, (2, 5, 4), False),
    ("avgpool", [3], {"stride": 2, "pad": 1, "count_pad": False}, (2, 5, 4), False),
    ("globalavgpool", [], {}, (3, 2, 3), False),
    ("batchnorm", [], {}, (3, 2, 3), True),
    ("lrn", [3, 0.5, 0.75, 1.0], {}, (5, 2, 2), False),
    ("softmax", [], {}, (6,), False),
    ("sigmoid", [], {}, (6,), False),
    ("tanh", [], {}, (6,), False),
    ("prelu", [], {}, (3, 2, 2), False),
]


@pytest.mark.parametrize("op, args, keywords, shape, train", FLOAT32_CASES, ids=[c[0] for c in FLOAT32_CASES])
def test_float32_equals_the_cpu_op(cuda_backend, op, args, keywords, shape, train):
    rng = np.random.default_rng(8)
    if op == "maxpool":  # distinct values: no ties
        x = rng.permutation(2 * int(np.prod(shape))).reshape(2, *shape) * 0.1 - 1
    else:
        x = rng.standard_normal((2, *shape))
    results = {}
    for backend in (CPU, cuda_backend):
        node = make_op(backend, op, args, keywords, [shape], np.float32)
        out = forward(backend, node, [x], train=train)
        (dx,) = backward(backend, node, np.linspace(-1, 1, out.size).reshape(out.shape).astype(np.float32))
        grads = {name: backend.to_host(g) for name, g in node.grads.items()}
        buffers = {name: backend.to_host(v) for name, v in node.buffers.items()}
        results[backend.name] = out, dx, grads, buffers
        assert out.dtype == np.float32 and dx.dtype == np.float32
    (out, dx, grads, buffers), (c_out, c_dx, c_grads, c_buffers) = results["cuda"], results["cpu"]
    np.testing.assert_allclose(out, c_out, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(dx, c_dx, rtol=1e-5, atol=1e-5)
    for name in c_grads:
        np.testing.assert_allclose(grads[name], c_grads[name], rtol=1e-5, atol=1e-5, err_msg=name)
    for name in c_buffers:
        np.testing.assert_allclose(buffers[name], c_buffers[name], rtol=1e-6, err_msg=name)


def test_softmax_of_large_values_does_not_overflow(cuda_backend):
    node = make_op(cuda_backend, "softmax", [], {}, [(4,)])
    out = forward(cuda_backend, node, [np.array([[1000.0, 1001.0, 999.0, -1000.0]])])
    e = np.exp([0.0, 1.0, -1.0])
    np.testing.assert_allclose(out[0], [*(e / e.sum()), 0.0], rtol=1e-12)


# ---- the ops together, as the plans drive them --------------------------------------------------

# Only this engineer's ops (no conv or fc): a residual sum the passes fuse with its relu, a concat
# they eliminate (its producers write into their channel slices), fan-out (x feeds three layers).
MIXED = """
network mixed {
    input 4x3x3
    relu
    residual {
        batchnorm -> prelu
        lrn(3)
    } shortcut auto
    relu
    concat {
        branch { maxpool(2x2, stride = 1, pad = 1) -> avgpool(2x2, stride = 1) }
        branch { avgpool(3x3, stride = 1, pad = 1) -> tanh }
        branch { sigmoid }
    }
    globalavgpool
    softmax
}
"""


def test_optimised_inference_on_cuda_equals_the_cpu():
    import cnnlang
    from cnnlang.passes.optimise import PASS_NAMES

    model = cnnlang.load(MIXED)
    passes = [name for name in PASS_NAMES if name != "plan-memory"]
    x = np.random.default_rng(9).standard_normal((2, 4, 3, 3))
    outputs = {}
    for backend in ("cpu", "cuda"):
        net = model.build(seed=1, dtype="float64", passes=passes, backend=backend).eval()
        graph = net.inference_plan.graph
        assert any(data.get("eliminated") for _, data in graph.nodes(data=True))
        assert any(data["op"] == "add" and data.get("activation") == "relu" for _, data in graph.nodes(data=True))
        outputs[backend] = net.forward(x)
    np.testing.assert_allclose(outputs["cuda"], outputs["cpu"], rtol=1e-12, atol=1e-15)


def test_training_step_on_cuda_equals_the_cpu():
    import cnnlang

    model = cnnlang.load(MIXED)
    x = np.random.default_rng(10).standard_normal((2, 4, 3, 3))
    dy = np.random.default_rng(11).standard_normal((2, 12, 1, 1))
    results = {}
    for backend in ("cpu", "cuda"):
        net = model.build(seed=1, dtype="float64", input_grad=True, backend=backend).train()
        out = net.forward(x)
        dx = net.backward(dy)
        net.pull()
        grads = {name: net.backend.to_host(g) for name, g in net.grads.items()}
        results[backend] = out, dx, grads, {name: b.copy() for name, b in net.buffers.items()}
    (out, dx, grads, buffers), (c_out, c_dx, c_grads, c_buffers) = results["cuda"], results["cpu"]
    np.testing.assert_allclose(out, c_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx, c_dx, rtol=1e-10, atol=1e-13)
    assert set(grads) == set(c_grads) and grads
    for name in c_grads:
        np.testing.assert_allclose(grads[name], c_grads[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for name in c_buffers:  # running statistics moved on the device, pulled to the host copies
        np.testing.assert_allclose(buffers[name], c_buffers[name], rtol=1e-12, err_msg=name)
