"""The GPU optimiser updates against the NumPy optimisers (cnnlang/train/optim.py) over several
steps: SGD plain, with momentum, Nesterov and weight decay; Adam with L2; AdamW."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.train.optim import SGD, Adam, AdamW

cuda = pytest.importorskip("numba.cuda")
from cnnlang.runtime.kernels.cuda import optim as kernels  # noqa: E402 - after the skip

TOLERANCE = {np.float64: dict(rtol=1e-13, atol=1e-15), np.float32: dict(rtol=1e-6, atol=1e-7)}
STEPS = 3

CASES = [
    (SGD, dict(lr=0.1)),
    (SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (Adam, dict(lr=0.01, weight_decay=0.1)),
    (AdamW, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1)),
]


def device_step(kind, options, p, g, slots, step):
    wd = options.get("weight_decay", 0.0)
    if kind is SGD:
        kernels.sgd_step(p, g, slots[0], options["lr"], options.get("momentum", 0.0), wd, options.get("nesterov", False))
    else:
        kernels.adam_step(p, g, slots[0], slots[1], step, options["lr"], options.get("betas", (0.9, 0.999)), 1e-8, wd,
                          decoupled=kind is AdamW)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, options", CASES, ids=lambda c: getattr(c, "kind", None) or ",".join(map(str, c)))
def test_steps_match_the_numpy_optimiser(kind, options, dtype):
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((STEPS, 37)).astype(dtype)
    start = rng.standard_normal(37).astype(dtype)
    params, grad = {"w": start.copy()}, {"w": np.zeros(37, dtype)}
    optimizer = kind(params, grad, ["w"], **options)
    p, g = cuda.to_device(start), cuda.device_array(37, dtype)
    slots = [cuda.to_device(np.zeros(37, dtype)) for _ in range(2)]
    for step in range(1, STEPS + 1):
        grad["w"][:] = grads[step - 1]
        optimizer.step()
        g.copy_to_device(grads[step - 1])
        device_step(kind, options, p, g, slots, step)
    np.testing.assert_allclose(p.copy_to_host(), params["w"], **TOLERANCE[dtype])
    for slot, expected in zip(slots, optimizer.slots.values()):
        np.testing.assert_allclose(slot.copy_to_host(), expected["w"], **TOLERANCE[dtype])
