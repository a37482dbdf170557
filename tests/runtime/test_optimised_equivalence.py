"""Optimised inference equals unoptimised inference: every zoo model with all passes, and a few
small models with each pass alone, with random weights and random batchnorm statistics (so
folding really rescales), in eval mode.

Tolerance (float32). The two runs compute the same function with different rounding: folding
rounds W * s and the new bias once in float32 where the original rounds the conv output and then
batchnorm's (y - mean) * s + beta. Each is a relative change of a few units of float32 rounding
(u = 6e-8) per layer; through up to ~150 layers the changes add like a random walk, amplified
by the network's own sensitivity. Measured: at most 1.4e-6 of the output scale (the largest
|value| of the reference output), about 23 u, on vgg16_bn; 7e-7 on resnet152; exactly 0 on the
models without batchnorm (fusion and buffer reuse change no arithmetic). The winograd pass
changes the arithmetic of 3x3 layers: F(2x2, 3x3)'s float32 error per layer is about that of
im2col's (0.6-1.6x, tests/runtime/kernels/test_kernel_winograd.py), so with it: at most 1.6e-6 on
vgg16_bn, 1.3e-6 on vgg19 (no batchnorm, so all of it Winograd's), 1.0e-6 on resnet34; no bound
changed. The bound, 1e-5 of the output scale (170 u), leaves a 6x margin for other BLAS builds
and thread counts, and is far
below what a real mistake (a wrong channel, a missed bias, a skipped layer, a clobbered buffer)
gives: a difference of the order of the output scale itself. The float64 runs check the same
arithmetic at float64 precision (measured 3e-15; bound 1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.passes.optimise import PASS_NAMES
from zoo_sizes import reduced

FLOAT32_TOLERANCE = 1e-5
FLOAT64_TOLERANCE = 1e-12


def randomise_batchnorm(net, rng: np.random.Generator) -> None:
    """Random running statistics and affine parameters, so folding is not near the identity."""
    for name, array in net.buffers.items():
        if name.endswith(".running_mean"):
            net.set_param(name, rng.normal(0.0, 0.3, array.shape))
        elif name.endswith(".running_var"):
            net.set_param(name, rng.uniform(0.5, 2.0, array.shape))
    for name, array in net.params.items():
        if name.endswith(".gamma"):
            net.set_param(name, rng.uniform(0.5, 1.5, array.shape))
        elif name.endswith(".beta"):
            net.set_param(name, rng.normal(0.0, 0.2, array.shape))


def compare(model: cnnlang.Model, passes, dtype: str = "float32", batch: int = 2, seed: int = 0) -> float:
    """The largest |optimised - unoptimised| over every output, relative to the output scale."""
    rng = np.random.default_rng(seed)
    plain = model.build(seed=seed, dtype=dtype).eval()
    randomise_batchnorm(plain, rng)
    fast = model.build(seed=seed, dtype=dtype, passes=passes).eval()
    for name, value in plain.state().items():
        fast.set_param(name, value)
    x = rng.standard_normal((batch, *model.input_shape))
    plain.forward(x)
    fast.forward(x)
    expected, actual = plain.outputs(), fast.outputs()
    assert expected.keys() == actual.keys()
    worst = 0.0
    for name, reference in expected.items():
        assert actual[name].shape == reference.shape
        scale = float(np.max(np.abs(reference)))
        assert np.all(np.isfinite(reference)) and scale > 0
        worst = max(worst, float(np.max(np.abs(actual[name] - reference))) / scale)
    return worst


@pytest.mark.parametrize("name", cnnlang.zoo_names())
def test_every_zoo_model_agrees_with_all_passes(name):
    model = reduced(name)
    assert compare(model, "all", batch=1 if "152" in name or "101" in name else 2) < FLOAT32_TOLERANCE


# Small models with every pattern the passes look for: conv/fc + batchnorm + activation,
# residual add + relu, dropout, nested concatenations, and an elementwise chain to run in place.
SMALL_MODELS = {
    "residual": """
        from "resnet_blocks.cnn" import basic, bottleneck
        network residual {
            input 3x16x16
            conv(8, 3x3, pad = 1, bias = false) -> batchnorm -> relu
            basic(8)
            bottleneck(4, stride = 2)
            globalavgpool
            flatten
            fc(12) -> batchnorm -> tanh -> dropout(0.5)
            fc(5) -> sigmoid
        }""",
    "inception": """
        network inception {
            input 3x12x12
            conv(6, 3x3, pad = 1) -> batchnorm -> relu
            concat {
                branch { conv(4, 1x1) -> relu }
                branch { conv(3, 1x1) -> relu -> conv(5, 3x3, pad = 1) -> relu }
                branch { concat { branch { conv(2, 1x1) -> relu } branch { maxpool(3x3, stride = 1, pad = 1) } } }
            }
            batchnorm -> relu -> dropout(0.2)
            avgpool(2x2, stride = 2)
            lrn(size = 3)
            flatten
            fc(4)
        }""",
    "signal": """
        network signal {
            input 2x32
            conv1d(6, 5, stride = 2, pad = same, bias = false) -> batchnorm -> relu
            concat {
                branch { conv1d(4, 3, pad = 2, dilation = 2, groups = 2) -> batchnorm(affine = false) -> tanh }
                branch { conv1d(3, 1) -> sigmoid }
            }
            conv1d(5, 3, pad = 1) -> relu
            flatten
            fc(4)
        }""",
    # One-channel branches written into their concat slice (a slice whose channel stride is
    # the row's): once a crash in the fused epilogue.
    "narrow": """
        network narrow {
            input 3x8x8
            concat {
                branch { conv(1, 3x3, pad = 1) -> relu }
                branch { conv(2, 1x1) }
                branch { conv(1, 1x1) -> tanh }
            }
            flatten
            fc(3)
        }""",
    # 3x3 stride-1 convs with enough channels for the winograd pass (the first, with 3 inputs, is
    # declined): folded, odd 9x9 and 7x7 outputs (partial tiles), padding 0, 1 and 2, tanh writing
    # into a concat slice, sigmoid, and a residual body.
    "winograd": """
        network winograd {
            input 3x9x9
            conv(64, 3x3, pad = 1, bias = false) -> batchnorm -> relu
            conv(64, 3x3, pad = 1, bias = false) -> batchnorm -> relu
            concat {
                branch { conv(64, 3x3, pad = 1) -> tanh }
                branch { conv(64, 3x3) -> sigmoid -> conv(64, 3x3, pad = 2) }
            }
            residual { conv(128, 3x3, pad = 1) -> batchnorm -> relu -> conv(128, 3x3, pad = 1) }
            relu
            globalavgpool
            flatten
            fc(4)
        }""",
}


@pytest.mark.parametrize("name", list(SMALL_MODELS))
@pytest.mark.parametrize("pass_name", PASS_NAMES)
def test_each_pass_alone_agrees(name, pass_name):
    assert compare(cnnlang.load(SMALL_MODELS[name]), [pass_name]) < FLOAT32_TOLERANCE


@pytest.mark.parametrize("name", list(SMALL_MODELS))
def test_small_models_agree_with_all_passes_in_float64(name):
    assert compare(cnnlang.load(SMALL_MODELS[name]), "all", dtype="float64") < FLOAT64_TOLERANCE


@pytest.mark.parametrize("name", ("resnet18", "googlenet", "vgg16_bn"))
def test_float64_agreement_is_exact_up_to_rounding(name):
    assert compare(reduced(name), "all", dtype="float64", batch=1) < FLOAT64_TOLERANCE


def test_winograd_weights_follow_parameter_changes():
    """Derived weights (Winograd's transformed ones, and the column-order copy of the first conv,
    which stays on im2col with its 3 input channels) are derived like folded ones: set_param,
    load and in-place edits followed by refresh() all reach them."""
    model = cnnlang.load(SMALL_MODELS["winograd"])
    fast = model.build(seed=0, passes="all", dtype="float64").eval()
    graph = fast.inference_plan.graph
    assert sum(graph.nodes[n].get("algorithm") == "winograd" for n in graph.nodes) == 6
    plain = model.build(seed=1, dtype="float64").eval()
    x = np.random.default_rng(0).standard_normal((2, *model.input_shape))
    fast.forward(x)
    for name, value in plain.state().items():
        fast.set_param(name, value)
    np.testing.assert_allclose(fast.forward(x), plain.forward(x), rtol=0, atol=1e-12 * np.abs(plain.forward(x)).max())
    for name, array in fast.params.items():
        if name.endswith(".weight"):
            array *= 2.0
            plain.params[name][...] = array
    fast.refresh()
    np.testing.assert_allclose(fast.forward(x), plain.forward(x), rtol=0, atol=1e-12 * np.abs(plain.forward(x)).max())


def test_the_passes_really_changed_the_graph():
    """Guards the tests above against comparing a graph with itself."""
    graph = cnnlang.load(SMALL_MODELS["inception"]).build(passes="all").inference_plan.graph
    ops = [graph.nodes[n]["op"] for n in graph.nodes]
    assert ops.count("batchnorm") == 1 and "dropout" not in ops  # the one after the concat stays
    assert any(graph.nodes[n].get("in_place") for n in graph.nodes)
    assert any(graph.nodes[n].get("write_into") for n in graph.nodes)
    assert any(graph.nodes[n].get("activation") == "relu" for n in graph.nodes)
    assert graph.graph["memory"]["after"] < graph.graph["memory"]["before"]
