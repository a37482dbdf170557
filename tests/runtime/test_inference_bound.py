"""The inference plan's bound steps (runtime/inference.py, ``Op.bind``): small layers run
closures over fixed views with the single-thread kernels of runtime/kernels/cpu/serial.py. The
reference is the same network without passes (the unoptimised plan, checked against NumPy by the
kernel and op tests), with the same parameters; the tolerances are those of
test_optimised_equivalence.py (folding changes the float32 rounding; the bound paths themselves
change no arithmetic)."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import cnnlang

# Every small path: a one-channel conv (planar.py's tile), a padded 3x3 conv (im2col), a 1x1 conv
# (the GEMM on x's view), a conv whose window is the whole image (GEMM on x's view), both pools,
# a flatten of 1x1 maps, fc layers with and without activation, and a batchnorm to fold. Every
# pixel reaches the output (the 3x3 average pooling reads all five rows): a wrong row shows.
SMALL = """
network small {
    input 1x12x12
    conv(4, 3x3) -> tanh
    maxpool(2x2, stride = 2)
    conv(6, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    conv(5, 1x1) -> sigmoid
    avgpool(3x3, stride = 2)
    conv(7, 2x2)
    flatten
    fc(6) -> tanh
    fc(3)
}
"""
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
BOUND_KINDS = ("conv", "maxpool", "avgpool", "flatten", "fc")


def pair(dtype: str, seed: int = 0):
    """(plain network, the same with all passes), same parameters, random batchnorm statistics."""
    model = cnnlang.load(SMALL)
    plain = model.build(seed=seed, dtype=dtype).eval()
    rng = np.random.default_rng(seed)
    for name, array in plain.state().items():
        if name.endswith("running_var"):
            plain.set_param(name, rng.uniform(0.5, 2.0, array.shape))
        elif name.endswith("running_mean"):
            plain.set_param(name, rng.normal(0.0, 0.5, array.shape))
    fast = model.build(seed=seed, dtype=dtype, passes="all").eval()
    for name, value in plain.state().items():
        fast.set_param(name, value)
    return model, plain, fast


def assert_close(actual, expected, dtype):
    scale = float(np.max(np.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOLERANCE[dtype] * scale)


def generic_steps(plan) -> list[str]:
    """The steps bound as a plain call of ``op.forward`` (not a small-work closure)."""
    return [step.node for step, run in zip(plan.steps, plan._runs)
            if isinstance(run, functools.partial) and run.func == step.op.forward]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3, 200])
def test_bound_forward_equals_the_plain_network(dtype, batch):
    model, plain, fast = pair(dtype)
    x = np.random.default_rng(batch).standard_normal((batch, *model.input_shape))
    assert_close(fast.forward(x), plain.forward(x), dtype)
    plan = fast.inference_plan
    kinds = {step.node: step.op.layer.op for step in plan.steps}
    generic = generic_steps(plan)
    if batch < 200:
        # small work: every conv, pool, flatten and fc step takes its closure
        assert not [node for node in generic if kinds[node] in BOUND_KINDS]
        first_conv = next(run for step, run in zip(plan.steps, plan._runs) if kinds[step.node] == "conv")
        assert first_conv.__name__ == "planar"  # one input channel: planar.py's register tile
    else:
        # the first conv's 200 x 10 x 10 x 9 columns are past SERIAL_BELOW: the parallel kernels
        assert kinds[generic[0]] == "conv"


def test_each_forward_reads_its_own_input_and_returns_a_new_array():
    model, plain, fast = pair("float32")
    rng = np.random.default_rng(1)
    first, second = (rng.standard_normal((1, *model.input_shape)).astype(np.float32) for _ in range(2))
    kept = first.copy()
    y1 = fast.forward(first)
    y2 = fast.forward(second)
    np.testing.assert_array_equal(first, kept)  # the caller's input is not written
    assert_close(y1, plain.forward(first), "float32")
    assert_close(y2, plain.forward(second), "float32")
    assert not np.array_equal(y1, y2)
    for value in fast.inference_plan.values.values():
        assert not np.shares_memory(y1, value) and not np.shares_memory(first, value)
    # an input given in another dtype or as one example without the batch axis
    assert_close(fast.forward(second[0].astype(np.float64)), plain.forward(second), "float32")


def test_parameter_changes_in_eval_mode_reach_the_bound_steps():
    model, plain, fast = pair("float32")
    x = np.random.default_rng(2).standard_normal((1, *model.input_shape))
    fast.forward(x)
    rng = np.random.default_rng(3)
    for name, array in plain.state().items():
        if name.endswith((".weight", "running_var")):  # the folded conv's weight and statistics too
            value = rng.uniform(0.5, 1.5, array.shape) if name.endswith("running_var") else rng.standard_normal(array.shape)
            plain.set_param(name, value)
            fast.set_param(name, value)
    assert_close(fast.forward(x), plain.forward(x), "float32")
