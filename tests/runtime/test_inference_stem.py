"""The inference plan runs a conv with few input and many output channels (a ResNet stem) on the
stem kernel (runtime/kernels/cpu/stem.py, bound by ConvOp.bind), with the folded batchnorm's bias
and the relu fused; the result agrees with the network without passes within the tolerances of
test_optimised_equivalence.py (the kernel itself is checked against NumPy in
tests/runtime/kernels/cpu/test_kernel_stem.py)."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from test_optimised_equivalence import FLOAT32_TOLERANCE, FLOAT64_TOLERANCE, randomise_batchnorm

STEM = """
network stem {
    input 3x20x18
    conv(32, 7x7, stride = 2, pad = 3, bias = false) -> batchnorm -> relu
    maxpool(3x3, stride = 2, pad = 1)
    conv(40, 3x3, pad = 1)
    flatten
    fc(5)
}
"""


@pytest.mark.parametrize("dtype, tolerance", [("float32", FLOAT32_TOLERANCE), ("float64", FLOAT64_TOLERANCE)])
@pytest.mark.parametrize("batch", [1, 4])
def test_the_stem_conv_runs_on_the_stem_kernel(dtype, tolerance, batch):
    model = cnnlang.load(STEM)
    rng = np.random.default_rng(batch)
    plain = model.build(seed=0, dtype=dtype).eval()
    randomise_batchnorm(plain, rng)
    fast = model.build(seed=0, dtype=dtype, passes="all").eval()
    for name, value in plain.state().items():
        fast.set_param(name, value)
    x = rng.standard_normal((batch, *model.input_shape))
    expected = plain.forward(x)
    np.testing.assert_allclose(fast.forward(x), expected, rtol=0, atol=tolerance * np.abs(expected).max())
    plan = fast.inference_plan
    stems = [step.node for step, run in zip(plan.steps, plan._runs) if "bind_stem" in getattr(run, "__qualname__", "")]
    assert len(stems) == 1 and plan.graph.nodes[stems[0]]["shape"][0] == 32
    # a parameter change reaches the stem's packed weight and bias (bound again after refresh)
    for name, array in plain.state().items():
        if name.endswith((".weight", ".running_mean")):
            value = rng.standard_normal(array.shape)
            plain.set_param(name, value)
            fast.set_param(name, value)
    expected = plain.forward(x)
    np.testing.assert_allclose(fast.forward(x), expected, rtol=0, atol=tolerance * np.abs(expected).max())
