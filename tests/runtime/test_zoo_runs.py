"""Every zoo network runs forward at its full input size, and backward (training mode, batch 2)
at a reduced input size so the suite stays fast; the benchmark runs full sizes."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from zoo_sizes import reduced


@pytest.mark.parametrize("name", cnnlang.zoo_names())
def test_zoo_network_runs_forward_at_full_size(name):
    model = cnnlang.load(name)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape)).astype(np.float32)
    y = model.build(seed=0).eval().forward(x)
    assert y.shape == (1, *model.output_shape)
    assert np.all(np.isfinite(y)) and np.std(y) > 0


@pytest.mark.parametrize("name", cnnlang.zoo_names())
def test_zoo_network_runs_backward(name):
    model = reduced(name)
    net = model.build(seed=0).train()
    rng = np.random.default_rng(0)
    y = net.forward(rng.standard_normal((2, *model.input_shape)).astype(np.float32))
    net.backward(rng.standard_normal(y.shape).astype(np.float32))
    silent = [n for n in net.trainable if not np.all(np.isfinite(net.grads[n])) or not np.any(net.grads[n])]
    assert silent == [], f"parameters without a finite, non-zero gradient: {silent[:5]}"
