"""cnnlang's runtime against PyTorch, network by network (skipped when torch is not installed).

Each network is built in float64 with random non-trivial batchnorm statistics, gammas, betas and
biases, translated to PyTorch by ``benchmarks/torch_reference.py`` (which copies the parameters),
and run on the same batch:

- eval mode: the outputs agree;
- train mode (batch statistics; dropout replays cnnlang's mask in PyTorch): the outputs agree,
  every trainable parameter's gradient and the input gradient from ``net.backward(dy)`` agree
  with torch autograd for the same ``dy`` (on every output), and the batchnorm running statistics
  after that one training pass agree.

"Agree" is relative to the size of the values: max |cnnlang - torch| <= 1e-9 * max |torch| per
array, and for gradients (where a value that is exactly zero in theory, such as the bias
gradient of a conv feeding a batchnorm, is pure rounding noise) also at most 1e-9 of the
largest gradient of the same layer. When something differs, the message names the first node
whose output differs although its inputs agree (op, shapes, error).

Zoo models run at 3x64x64 where they compile at that size (else 3x96x96, else their own size).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import cnnlang
from cnnlang import ir
from cnnlang.errors import CnnError

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from torch_reference import dropout_masks, to_input, to_torch  # noqa: E402

RTOL = 1e-9
SIZES = (64, 96)  # reduced input sizes tried for the ImageNet models, smallest first

# Hand-written networks for what the zoo does not exercise.
TWO_D = """
block unit(c, stride = 1) {
    residual {
        conv(c, 3x3, stride = stride, pad = 1, bias = false) -> batchnorm -> relu
        conv(c, 3x3, pad = 1, bias = false) -> batchnorm(eps = 0.001, momentum = 0.3)
    } shortcut auto
    relu
}

network two_d {
    input 3x17x18
    stem: conv(8, 3x3, stride = 2, pad = same) -> batchnorm -> relu     # pads H (1, 1), W (0, 1)
    wide: conv(8, 4x4, pad = same) -> tanh                             # pads (1, 2) on both axes
    dil: conv(8, 3x3, pad = 2, dilation = 2, groups = 2) -> sigmoid
    conv(8, 3x1, stride = 2x1, pad = (1, 0), groups = 8) -> dw: relu  # depthwise, rectangular
    from wide, dil -> s2: add
    from wide, dil, s2 -> sum3: add                                    # three inputs, fan-out
    lrn(size = 3, alpha = 0.01, beta = 0.75, k = 1.5)
    mp: maxpool(3x3, stride = 2, pad = 1, ceil = true)
    from sum3 -> avgpool(3x3, stride = 2, pad = 1, ceil = true, count_pad = false)
    ap: relu
    from sum3 -> avgpool(2x3, stride = 2, pad = 1, ceil = true)
    ap2: tanh
    from sum3 -> maxpool(2x2, stride = 1, dilation = 2)
    mpd: maxpool(3x3, stride = 3, ceil = true)
    from mp, ap, ap2 -> cat: concat
    unit(16, stride = 2)
    unit(16)
    sm: softmax                                                        # over channels of 16x3x3
    dropout(0.3)
    fc(12) -> batchnorm(momentum = 0.2) -> relu                        # batchnorm on flat features
    dropout(0.25)
    main: fc(5)
    from mpd -> fa: flatten
    from sum3 -> avgpool(4x4, stride = 3, pad = 1, ceil = true)         # last window hangs past the pad
    ov: relu -> fb: flatten
    from dw -> globalavgpool -> fc3: fc(6)
    from fa, fb, fc3 -> concat -> fc(4, bias = false)                  # concat of flat features
    aux: softmax
    output main, aux
}
"""

ONE_D = """
network one_d {
    input 4x50
    conv1d(8, 5, stride = 2, pad = same) -> batchnorm -> relu         # pads (1, 2)
    a: maxpool(3, stride = 2, pad = 1, ceil = true)
    conv1d(8, 3, pad = 2, dilation = 2, groups = 2) -> batchnorm(affine = false) -> tanh
    b: avgpool(3, stride = 2, pad = 1, ceil = true, count_pad = false)
    from a -> avgpool(4, stride = 2, pad = 1, ceil = true)             # last window hangs past the pad
    c: sigmoid
    from b, c -> concat
    lrn(size = 4, alpha = 0.1, beta = 0.5, k = 1)
    conv1d(6, 4, pad = same, bias = false) -> softmax                  # pads (1, 2)
    globalavgpool
    flatten -> fc(7) -> relu
    fc(3)
}
"""

MISC = """
network misc {
    input 2x12x11
    conv(1, 3x3, pad = 1, weights = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])   # fixed: no gradient
    conv(6, 1x7, pad = (0, 3)) -> prelu
    conv(6, 2x2, stride = 2, pad = valid, frozen = true) -> batchnorm(eps = 0.1) -> relu
    conv(5, 5x5, stride = 3, pad = same)                              # stride 3: pads H (1, 1), W (1, 2)
    maxpool(2x2, stride = 1, pad = 1)
    fc(10) -> lrn(size = 3, alpha = 0.5) -> sigmoid                   # fc on C x H x W, lrn on flat
    dropout(0.5)
    fc(3)
}
"""

NETWORKS = {"two_d": TWO_D, "one_d": ONE_D, "misc": MISC}


# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Torch's OpenMP pool and numba's spin on the same cores; in one process that slows both
    down many times over. One torch thread keeps the comparison quick."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_numba_thread():
    """The zoo models' small float64 tensors gain nothing from threads, and on a busy machine
    numba's OpenMP threads wait for each other at every kernel's barrier (tens of times slower);
    one thread keeps the zoo comparisons quick and steady. The hand-written networks keep the
    default thread count, so the parallel kernels are compared too."""
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(threads)


def load_zoo(name: str):
    """The zoo model at a reduced input size where it compiles at one, else at its own size."""
    full = cnnlang.load(name)
    channels, *spatial = full.input_shape
    for size in SIZES:
        if size >= min(spatial):
            break
        try:
            return cnnlang.load(name, input_shape=(channels, size, size))
        except CnnError:
            continue
    return full


def randomise(net, rng: np.random.Generator) -> None:
    """Non-trivial batchnorm statistics, gammas and betas, and non-zero biases."""
    for name, array in net.buffers.items():
        if name.endswith(".running_mean"):
            array[...] = rng.normal(0.0, 0.3, array.shape)
        elif name.endswith(".running_var"):
            array[...] = rng.uniform(0.5, 2.0, array.shape)
    for name, array in net.params.items():
        if name.endswith(".gamma"):
            array[...] = rng.uniform(0.5, 1.5, array.shape)
        elif name.endswith(".beta") or name.endswith(".bias"):
            array[...] = rng.normal(0.0, 0.1, array.shape)


def error(got: np.ndarray, want: np.ndarray, scale: float | None = None) -> float:
    """max |got - want| relative to ``scale`` (default: max |want|)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    if not (np.all(np.isfinite(got)) and np.all(np.isfinite(want))):
        return 0.0 if np.array_equal(got, want, equal_nan=True) else float("inf")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    if scale is None:
        scale = float(np.max(np.abs(want))) if want.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def cnn_values(net) -> dict[str, np.ndarray]:
    """Every node's value from cnnlang's last forward pass, in the user's N x C x ... layout."""
    from cnnlang.runtime.ops import to_user

    return {node: to_user(value) for node, value in net.plan.values.items()}


def first_divergence(model, net, twin) -> str:
    """The first node (topological order) whose output differs although its inputs agree."""
    graph = model.graph
    mine, theirs = cnn_values(net), {k: v.detach().numpy() for k, v in twin.values.items()}
    bad: set[str] = set()
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        e = error(mine[node], theirs[node])
        if e > RTOL:
            bad.add(node)
            if not any(i in bad for i in data["inputs"]):
                shapes = [f"{tuple(mine[i].shape)}" for i in data["inputs"]]
                return (
                    f"first divergence at node '{node}' (op {data['op']}, {data['layer'].arguments()}), "
                    f"inputs {', '.join(shapes)} -> output {tuple(mine[node].shape)}: relative error {e:.3g} "
                    f"(max abs diff {np.max(np.abs(mine[node] - theirs[node])):.3g}, "
                    f"max |value| {np.max(np.abs(theirs[node])):.3g})"
                )
    return "no single node differs beyond the tolerance (the difference accumulates)"


def run_torch(twin, x: np.ndarray, requires_grad: bool = False):
    xt = to_input(x)
    if requires_grad:
        xt.requires_grad_(True)
    y = twin(xt, keep=True)
    return xt, y


def check_against_torch(model, batch: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    net = model.build(seed=seed, dtype="float64", input_grad=True)
    randomise(net, rng)
    twin = to_torch(model, net, dropout="replay")
    x = rng.standard_normal((batch, *model.input_shape))
    outputs = list(model.graph.graph["outputs"])
    failures: list[str] = []

    # -- eval mode: running statistics, no dropout
    net.eval()
    twin.eval()
    y = net.forward(x)
    with torch.no_grad():
        _, yt = run_torch(twin, x)
    e = error(y, yt.numpy())
    if e > RTOL:
        failures.append(f"eval output differs: relative error {e:.3g}; {first_divergence(model, net, twin)}")

    # -- train mode: batch statistics, cnnlang's dropout mask replayed in torch
    net.train()
    twin.train()
    y = net.forward(x)
    mine = net.outputs()
    for node, mask in dropout_masks(model, net).items():
        twin.module_of(node).mask = torch.from_numpy(mask)
    xt, yt = run_torch(twin, x, requires_grad=True)
    for name in outputs:
        e = error(mine[name], twin.outputs[name].detach().numpy())
        if e > RTOL:
            failures.append(f"train output '{name}' differs: relative error {e:.3g}; {first_divergence(model, net, twin)}")
    del y

    dys = {name: rng.standard_normal(mine[name].shape) for name in outputs}
    dx = net.backward(dys)
    torch.autograd.backward([twin.outputs[n] for n in outputs], [torch.from_numpy(dys[n]) for n in outputs])
    theirs = twin.cnn_grads()
    by_node: dict[str, float] = {}
    for name in net.trainable:
        node = name.rsplit(".", 1)[0]
        want = theirs[name]
        assert want is not None, f"torch computed no gradient for {name}"
        by_node[node] = max(by_node.get(node, 0.0), float(np.max(np.abs(want))))
    grad_failures = []
    for name in net.trainable:
        node = name.rsplit(".", 1)[0]
        want = theirs[name]
        scale = max(float(np.max(np.abs(want))), by_node[node])
        e = error(net.grads[name], want, scale)
        if e > RTOL:
            order = model.graph.nodes[node]["order"]
            grad_failures.append((order, f"gradient of {name} (op {model.graph.nodes[node]['op']}, "
                                         f"shape {want.shape}) differs: relative error {e:.3g}"))
    # The last node in topological order is the first one backward reaches.
    failures += [text for _, text in sorted(grad_failures, reverse=True)]
    e = error(dx, xt.grad.numpy())
    if e > RTOL:
        failures.append(f"input gradient differs: relative error {e:.3g}")

    buffers = twin.cnn_buffers()
    for name, value in net.buffers.items():
        e = error(value, buffers[name].detach().numpy())
        if e > RTOL:
            failures.append(f"{name} after one training pass differs: relative error {e:.3g}")

    assert not failures, f"{model.name} ({'x'.join(map(str, model.input_shape))}, batch {batch}) " \
        "differs from PyTorch:\n  " + "\n  ".join(failures)


# ---- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", cnnlang.zoo_names())
def test_zoo_model_matches_torch(name, one_numba_thread):
    check_against_torch(load_zoo(name), batch=2)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_small_network_matches_torch(name):
    check_against_torch(cnnlang.load(NETWORKS[name]), batch=3, seed=1)


def test_translation_covers_every_op_in_the_tests():
    """The hand-written networks and the zoo between them exercise every layer type."""
    from cnnlang.layers import LAYER_TYPES

    seen = set()
    for source in NETWORKS.values():
        seen |= {d["op"] for _, d in cnnlang.load(source).graph.nodes(data=True)}
    for name in cnnlang.zoo_names():
        seen |= {d["op"] for _, d in cnnlang.load(name).graph.nodes(data=True)}
    assert {cls.op for cls in LAYER_TYPES} <= seen


def test_float32_channels_last_twin_matches():
    """The benchmark's configuration (float32, channels-last) computes the same function."""
    model = load_zoo("resnet18")
    net = model.build(seed=3, dtype="float32")
    randomise(net, np.random.default_rng(3))
    x = np.random.default_rng(4).standard_normal((2, *model.input_shape)).astype(np.float32)
    y = net.forward(x)
    for channels_last in (False, True):
        twin = to_torch(model, net, channels_last=channels_last)
        with torch.inference_mode():
            yt = twin(to_input(x, channels_last)).numpy()
        assert error(y, yt) < 1e-4, f"channels_last={channels_last}: relative error {error(y, yt):.3g}"
