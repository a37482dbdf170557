"""The optimisers stepping device arrays (runtime/kernels/cuda/optim.py) against the same
optimisers on NumPy arrays over several steps: SGD plain, with momentum, Nesterov and weight
decay; Adam with L2; AdamW; parameters excluded from decay; and the state round trip."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.train.optim import make_optimizer

TOLERANCE = {np.float64: dict(rtol=1e-13, atol=1e-15), np.float32: dict(rtol=1e-6, atol=1e-7)}
STEPS = 3

CASES = {  # make_optimizer's kind, momentum, weight_decay, nesterov
    "sgd": ("sgd", 0.0, 0.0, False),
    "sgd-momentum-decay": ("sgd", 0.9, 0.01, False),
    "sgd-nesterov": ("sgd", 0.9, 0.01, True),
    "adam-l2": ("adam", 0.0, 0.1, False),
    "adamw": ("adamw", 0.0, 0.1, False),
}


def pair(cuda_backend, case, dtype, seed=0):
    """The same optimiser over NumPy arrays and over device copies of them, with the gradients."""
    kind, momentum, decay, nesterov = CASES[case]
    rng = np.random.default_rng(seed)
    host = {"w": rng.standard_normal((3, 5)).astype(dtype), "b": rng.standard_normal(5).astype(dtype)}
    device = {name: cuda_backend.to_device(array) for name, array in host.items()}
    host_grads = {name: np.zeros_like(array) for name, array in host.items()}
    device_grads = {name: cuda_backend.zeros(array.shape, dtype) for name, array in host.items()}
    options = dict(lr=0.05, momentum=momentum, weight_decay=decay, nesterov=nesterov, no_decay=["b"], betas=(0.8, 0.99))
    on_host = make_optimizer(kind, host, host_grads, ["w", "b"], **options)
    on_device = make_optimizer(kind, device, device_grads, ["w", "b"], **options, backend=cuda_backend)
    for step in range(STEPS):
        for name, array in host.items():
            host_grads[name][...] = rng.standard_normal(array.shape)
            cuda_backend.upload(host_grads[name], device_grads[name])
        on_host.step()
        on_device.step()
    return host, device, on_host, on_device


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES)
def test_device_steps_match_the_numpy_optimiser(cuda_backend, case, dtype):
    host, device, on_host, on_device = pair(cuda_backend, case, dtype)
    for name in host:
        np.testing.assert_allclose(cuda_backend.to_host(device[name]), host[name], **TOLERANCE[dtype])
    expected = on_host.state_arrays()
    state = on_device.state_arrays()
    assert state.keys() == expected.keys()
    for key, array in state.items():
        assert isinstance(array, np.ndarray) and array.dtype == dtype
        np.testing.assert_allclose(array, expected[key], **TOLERANCE[dtype])


def test_state_loads_onto_the_device(cuda_backend):
    # The state a CPU run saved, loaded into a device optimiser, gives the CPU run's next step.
    host, device, on_host, on_device = pair(cuda_backend, "adamw", np.float64)
    _, fresh, _, restored = pair(cuda_backend, "adamw", np.float64, seed=1)
    for name in host:
        cuda_backend.upload(host[name], fresh[name])
    restored.load_state(on_host.state_arrays(), on_host.state_scalars())
    assert restored.steps == STEPS
    for name in host:
        on_host.grads[name][...] = 0.5
        cuda_backend.upload(on_host.grads[name], restored.grads[name])
    on_host.step()
    restored.step()
    for name in host:
        np.testing.assert_allclose(cuda_backend.to_host(fresh[name]), host[name], rtol=1e-13)
