"""Every layer type on the "cuda" backend, through every example of tests/layer_cases.py (the same
batches as tests/layers/test_layer_reference.py), in float64:

- forward, input gradients and parameter gradients equal the layer's NumPy reference (itself
  checked there against central differences and PyTorch);
- the same op on the CPU gives the same values, and the same buffers after it (batchnorm's
  running statistics);
- every op registered on the CPU has a CUDA op.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.runtime.backend import CPU
from cnnlang.runtime.ops import REGISTRY, Context, internal_shape, op_class, to_internal, to_user
from layer_cases import BATCH, CASES, layer_example

EXAMPLES = [
    pytest.param(op, index, train, id=f"{op}-{index}{'-train' if train else ''}")
    for op, case in CASES.items()
    for index in range(len(case.examples))
    for train in ((False, True) if op == "batchnorm" else (False,))
]


def test_every_cpu_op_has_a_cuda_op(cuda_backend):
    cpu_ops = {op for op, backend in REGISTRY if backend == CPU.name}
    missing = sorted(op for op in cpu_ops if (op, cuda_backend.name) not in REGISTRY)
    assert missing == []


def run_op(backend, op, index, train):
    """Forward and backward of example ``index`` through ``op`` on ``backend``: (output, input
    gradients, parameter gradients, buffers after forward), as host arrays in the user's layout."""
    layer, shapes, inputs, params, buffers = layer_example(op, index)
    node = op_class(op, backend)(
        layer, [internal_shape(s) for s in shapes], internal_shape(layer.output_shape(shapes)), np.float64, backend
    )
    node.params = {name: backend.to_device(p.copy()) for name, p in params.items()}
    node.grads = {name: backend.to_device(np.full(p.shape, np.nan)) for name, p in params.items()}
    node.buffers = {name: backend.to_device(b.copy()) for name, b in buffers.items()}
    out = backend.empty((BATCH, *node.out_shape), np.float64)
    node.forward([backend.to_device(to_internal(x)) for x in inputs], out, Context(train=train, rng=backend.rng(0)))
    dy = np.random.default_rng(2).standard_normal((BATCH, *layer.output_shape(shapes)))
    dxs = node.backward(backend.to_device(to_internal(dy)))
    host = backend.to_host
    return (
        to_user(host(out)),
        [to_user(host(dx)) for dx in dxs],
        {name: host(g) for name, g in node.grads.items()},
        {name: host(b) for name, b in node.buffers.items()},
        dy,
    )


def close(actual, expected, what):
    np.testing.assert_allclose(actual, expected, rtol=1e-9, atol=1e-11, err_msg=what)


@pytest.mark.parametrize("op, index, train", EXAMPLES)
def test_cuda_op_against_the_reference_and_the_cpu(cuda_backend, op, index, train):
    out, dxs, grads, buffers, dy = run_op(cuda_backend, op, index, train)
    layer, _, inputs, params, start_buffers = layer_example(op, index)
    close(out, layer.forward_reference(inputs, params, start_buffers, train), f"{op} forward")
    ref_dxs, ref_grads = layer.backward_reference(inputs, params, start_buffers, dy, train)
    assert len(dxs) == len(ref_dxs)
    for i, (dx, ref) in enumerate(zip(dxs, ref_dxs)):
        close(dx, ref, f"{op} input gradient {i}")
    assert set(grads) == set(ref_grads)
    for name, grad in ref_grads.items():
        close(grads[name], grad, f"{op} gradient of {name}")

    cpu_out, cpu_dxs, cpu_grads, cpu_buffers, _ = run_op(CPU, op, index, train)
    close(out, cpu_out, f"{op} forward vs the CPU op")
    for i, (dx, cpu_dx) in enumerate(zip(dxs, cpu_dxs)):
        close(dx, cpu_dx, f"{op} input gradient {i} vs the CPU op")
    for name, value in cpu_buffers.items():  # batchnorm's running statistics
        close(buffers[name], value, f"{op} buffer {name} vs the CPU op")
