"""The inference plan binds the register-blocked kernels with the epilogue in registers
(ConvOp.bind): a conv with few input and many output channels (a ResNet stem) runs on stem.py's
kernel, convs over many pixels on gemm_epilogue.py's (1x1s on x's view, with the folded batchnorm's
bias, the relu, and the residual shortcut with ``fuse-residual``; others on im2col's columns)
unless pointwise.py's panels or smallconv.py's window took them, or the conv has so few channels
that the rule gives it the direct kernels (LeNet-5's c1: planar.py's).
The result agrees with the network without passes within the tolerances of test_optimised_equivalence.py (the kernels themselves are
checked against NumPy in tests/runtime/kernels/cpu/test_kernel_stem.py and
test_kernel_gemm_epilogue.py), also after a parameter change (the packed weights are bound again)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from test_optimised_equivalence import FLOAT32_TOLERANCE, FLOAT64_TOLERANCE, randomise_batchnorm

# After the stride-2 conv, 4 images of 18 x 18 pixels: 1296 pixels, enough for gemm_epilogue.py's
# kernel, and 1 image (324 pixels) too (POINTWISE_MIN_PIXELS). The bottleneck's 3x3 has 32 outputs: whole
# panels of smallconv.py's window at AVX-512's vector width too (pointwise.panel_width).
NETWORK = """
from "resnet_blocks.cnn" import bottleneck

network blocks {
    input 3x72x72
    conv(32, 7x7, stride = 2, pad = 3, bias = false) -> batchnorm -> relu
    conv(24, 3x3, stride = 2, pad = 1, bias = false) -> batchnorm -> relu
    bottleneck(32)
    conv(10, 1x1) -> tanh
    flatten
    fc(5)
}
"""


def bound_to(plan, kernel: str) -> list[str]:
    """The steps bound to a closure of ``kernel`` (``bind_stem``, ``bind_pointwise``)."""
    return [step.node for step, run in zip(plan.steps, plan._runs) if kernel in getattr(run, "__qualname__", "")]


def built_pair(model, dtype: str, rng, batchnorm: bool = False):
    """The network without passes and with all, in eval mode, with the same parameters (and
    random batchnorm statistics when asked)."""
    plain = model.build(seed=0, dtype=dtype).eval()
    if batchnorm:
        randomise_batchnorm(plain, rng)
    fast = model.build(seed=0, dtype=dtype, passes="all").eval()
    for name, value in plain.state().items():
        fast.set_param(name, value)
    return plain, fast


def assert_agree(plain, fast, x, tolerance: float) -> None:
    expected = plain.forward(x)
    np.testing.assert_allclose(fast.forward(x), expected, rtol=0, atol=tolerance * np.abs(expected).max())


def agreeing_pair(source: str, dtype: str, tolerance: float, batch: int):
    """built_pair of ``source`` with random batchnorm statistics, checked to agree on a random batch:
    (plain, fast, that batch, the generator)."""
    model = cnnlang.load(source)
    rng = np.random.default_rng(batch)
    plain, fast = built_pair(model, dtype, rng, batchnorm=True)
    x = rng.standard_normal((batch, *model.input_shape))
    assert_agree(plain, fast, x, tolerance)
    return plain, fast, x, rng


def change_parameters(plain, fast, rng, suffixes: tuple[str, ...] | None = None) -> None:
    """The same random rescaling of both networks' parameters (those ending in ``suffixes``)."""
    for name, array in plain.state().items():
        if suffixes is None or name.endswith(suffixes):
            value = array * rng.uniform(-1.5, 1.5, array.shape)
            plain.set_param(name, value)
            fast.set_param(name, value)


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("batch", [1, 4])
def test_the_plan_runs_the_register_blocked_kernels(dtype, tolerance, batch):
    plain, fast, x, rng = agreeing_pair(NETWORK, dtype, tolerance, batch)
    plan = fast.inference_plan
    stems = bound_to(plan, "bind_stem")
    assert len(stems) == 1 and plan.graph.nodes[stems[0]]["shape"][0] == 32
    pointwise, columns = bound_to(plan, "bind_pointwise"), bound_to(plan, "bind_columns")
    # at both batches (324 pixels are enough: POINTWISE_MIN_PIXELS): the bottleneck's 1x1 that
    # adds the projection shortcut (its other two run pointwise.py's panels, its 3x3 smallconv.py's
    # window), not the tanh one; the stride-2 conv on im2col's columns
    residual = [node for node in pointwise if plan.graph.nodes[node].get("residual")]
    assert len(pointwise) == 1 and len(residual) == 1 and len(columns) == 1
    shortcut = plan.graph.nodes[residual[0]]["inputs"][1]  # the projection, read by nothing after
    assert plan.graph.nodes[residual[0]]["in_place"] and plan.values[residual[0]] is plan.values[shortcut]
    panels = [step.node for step in plan.steps if getattr(step.op, "panels", None) is not None]
    windows = [step.node for step in plan.steps if getattr(step.op, "window", None) is not None]
    assert len(panels) == 2 and len(windows) == 1
    # a parameter change reaches the packed weights and biases (bound again after refresh)
    # (scaled as they were: unscaled random weights blow the activations up, and float32's
    # cancellation with them)
    change_parameters(plain, fast, rng, (".weight", ".running_mean"))
    assert_agree(plain, fast, x, tolerance)


# Identity shortcuts, each read by its block's first conv and then added by its last (plan-memory writes
# that conv's output over it); 36 pixels an image: at batch 2 the conv runs conv.py's GEMM and then
# the residual pass (which must read a copy of the shortcut), at batch 8 gemm_epilogue.py's kernel.
IDENTITY = """
network identity {
    input 3x6x6
    conv(16, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    residual {
        conv(8, 1x1, bias = false) -> batchnorm -> relu
        conv(16, 1x1, bias = false) -> batchnorm
    } shortcut auto
    relu
    residual {
        conv(8, 1x1) -> relu
        conv(16, 1x1)
    } shortcut auto
    relu
    globalavgpool
    fc(3)
}
"""


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("batch, kernel", [(2, None), (8, "bind_pointwise")])
def test_a_residual_conv_written_over_its_shortcut(dtype, tolerance, batch, kernel):
    plain, fast, x, rng = agreeing_pair(IDENTITY, dtype, tolerance, batch)
    plan = fast.inference_plan
    residual = [node for node in plan.graph if plan.graph.nodes[node].get("residual")]
    assert len(residual) == 2
    for node in residual:
        shortcut = plan.graph.nodes[node]["inputs"][1]
        assert plan.graph.nodes[node]["in_place"] and plan.values[node] is plan.values[shortcut]
        assert (node in bound_to(plan, "bind_pointwise")) == (kernel == "bind_pointwise")
    assert_agree(plain, fast, x, tolerance)  # again: nothing of the last call is read
    change_parameters(plain, fast, rng)
    assert_agree(plain, fast, 2 * x, tolerance)


HEAD = """
network head {
    input 128x3x3
    globalavgpool
    fc(300) -> relu
    fc(120)
}
"""


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("batch", [3, 8])
def test_classifier_fcs_run_the_fused_gemm(dtype, tolerance, batch):
    """fc layers after a global pool with at least BLAS_SERIAL_BELOW multiply-adds (both here at
    batch 8: 307200 and 288000) run pointwise.py's GEMM with bias and relu fused, in Numba's pool;
    also after a parameter change."""
    model = cnnlang.load(HEAD)
    rng = np.random.default_rng(batch)
    plain, fast = built_pair(model, dtype, rng)
    x = rng.standard_normal((batch, *model.input_shape))
    assert_agree(plain, fast, x, tolerance)
    fused = bound_to(fast.inference_plan, "bind_pointwise")
    assert len(fused) == (2 if batch == 8 else 0)
    change_parameters(plain, fast, rng)
    assert_agree(plain, fast, x, tolerance)


def test_a_conv_over_one_input_channel_runs_the_planar_kernel_not_the_columns(monkeypatch):
    import cnnlang.runtime.kernels.cpu.conv as conv

    ran = []
    planar_forward = conv.planar_forward

    def recorded(*args):
        ran.append("planar")
        return planar_forward(*args)

    monkeypatch.setattr(conv, "planar_forward", recorded)
    model = cnnlang.load("network c1 { input 1x32x32\n conv(6, 5x5) -> relu\n flatten\n fc(3) }")
    plain = model.build(seed=0, dtype="float64").eval()
    fast = model.build(seed=0, dtype="float64", passes="all").eval()
    x = np.random.default_rng(5).standard_normal((8, *model.input_shape))  # 6272 pixels: enough for the columns
    expected = plain.forward(x)
    ran.clear()
    np.testing.assert_allclose(fast.forward(x), expected, rtol=0, atol=FLOAT64_TOLERANCE * np.abs(expected).max())
    assert ran == ["planar"] and bound_to(fast.inference_plan, "bind_columns") == []


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("channels, batch", [(16, 1), (64, 4)])
def test_a_strided_1x1_runs_the_columns_kernel(dtype, tolerance, channels, batch):
    """ResNet's downsampling shortcut: a 1x1 stride-2 conv with its folded batchnorm and relu runs
    gemm_epilogue.py's kernel on im2col's columns with the weight's own view (1x1 weights get no
    packed copy), both when its columns are few enough for the serial kernels (16 channels at batch
    1: 4096) and when not (64 at batch 4: 65536, SERIAL_BELOW); also after a parameter change."""
    model = cnnlang.load(f"network shortcut {{ input {channels}x32x32\n"
                         "conv(32, 1x1, stride = 2, bias = false) -> batchnorm -> relu\n flatten\n fc(5) }")
    rng = np.random.default_rng(channels)
    plain, fast = built_pair(model, dtype, rng, batchnorm=True)
    x = rng.standard_normal((batch, *model.input_shape))
    assert_agree(plain, fast, x, tolerance)
    columns = bound_to(fast.inference_plan, "bind_columns")
    assert len(columns) == 1 and fast.inference_plan.graph.nodes[columns[0]]["op"] == "conv"
    change_parameters(plain, fast, rng, (".weight", ".running_mean"))
    assert_agree(plain, fast, x, tolerance)


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("activation", ["", " -> relu", " -> tanh"])
@pytest.mark.parametrize("batch", [2, 8])
def test_a_whole_image_conv_runs_the_fused_gemm_as_an_fc(dtype, tolerance, activation, batch):
    """LeNet-5's c5 (a 5x5 window over a 5x5 image) is an fc on x's view: from BLAS_SERIAL_BELOW
    multiply-adds (batch 8: 384000; not batch 2: 96000) pointwise.py's GEMM, a relu fused, a tanh
    after it; also after a parameter change."""
    model = cnnlang.load(f"network c5 {{ input 16x5x5\n conv(120, 5x5){activation}\n flatten\n fc(5) }}")
    rng = np.random.default_rng(batch)
    plain, fast = built_pair(model, dtype, rng)
    x = rng.standard_normal((batch, *model.input_shape))
    assert_agree(plain, fast, x, tolerance)
    plan = fast.inference_plan
    whole = bound_to(plan, "bind_pointwise" if "tanh" not in activation else "_bind_whole")
    assert [plan.graph.nodes[node]["op"] for node in whole] == (["conv"] if batch == 8 else [])
    change_parameters(plain, fast, rng)
    assert_agree(plain, fast, x, tolerance)
