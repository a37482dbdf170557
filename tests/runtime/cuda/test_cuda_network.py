"""Whole networks on the cuda backend equal the same networks on the CPU (float64, tiny shapes
for the simulator): optimised inference, a training forward and backward, and the host copies
(pull, save, set_param, load) that keep weight files the same on both."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.runtime.backend import OutOfDeviceMemory

# What the zoo's networks are made of, at toy size: conv + batchnorm (folded by the passes) +
# relu, a bottleneck-style residual block (its add and relu fused into the 1x1 conv's epilogue by
# fuse-residual), pooling, an inception-style concat whose
# conv branches write into their channel slices, global pooling and fc.
SOURCE = """
network mini {
    input 2x4x4
    conv(4, 3x3, pad = 1) -> batchnorm -> relu
    residual {
        conv(4, 3x3, pad = 1) -> batchnorm -> relu
        conv(4, 1x1) -> batchnorm
    } shortcut auto
    relu
    maxpool(2)
    concat {
        branch { conv(2, 1x1) -> relu }
        branch { conv(3, 3x3, pad = 1) -> relu }
        branch { avgpool(3x3, stride = 1, pad = 1) }
    }
    globalavgpool
    fc(3)
}
"""
# The host-copy tests need parameters, not layer variety (the simulator is slow).
TINY = "network tiny { input 2x6x6\n conv(4, 3x3, pad = 1)\n fc(3) }"
TOLERANCE = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def model():
    return cnnlang.load(SOURCE)


@pytest.fixture(scope="module")
def tiny():
    return cnnlang.load(TINY)


def pair(model, cuda_backend, **options):
    options = {"seed": 0, "dtype": "float64", **options}
    return model.build(**options), model.build(backend=cuda_backend, **options)


def batch(model, n=2, seed=1):
    return np.random.default_rng(seed).standard_normal((n, *model.input_shape))


def test_eval_forward_equals_the_cpu_with_and_without_passes(model, cuda_backend):
    x = batch(model)
    for passes in (None, "all"):
        cpu, gpu = pair(model, cuda_backend, passes=passes)
        if passes:
            graph = gpu.inference_plan.graph
            assert any(graph.nodes[n].get("residual") for n in graph), "the toy should exercise fuse-residual"
        np.testing.assert_allclose(gpu.eval().forward(x), cpu.eval().forward(x), **TOLERANCE)
        if passes:
            # plan-memory writes the residual conv over its shortcut; the GPU's conv adds the shortcut in
            # a pass after its GEMM, so its plan gives it a buffer of its own (the CPU's does not)
            node = next(n for n in graph if graph.nodes[n].get("residual"))
            shortcut = graph.nodes[node]["inputs"][1]
            assert graph.nodes[node]["in_place"]
            assert cpu.inference_plan.values[node] is cpu.inference_plan.values[shortcut]
            assert gpu.inference_plan.values[node] is not gpu.inference_plan.values[shortcut]


def test_a_depthwise_conv_streamed_on_the_cpu_runs_as_written_on_the_gpu(cuda_backend):
    """fuse-depthwise marks the pair; the GPU's conv has no fused kernel, so its plan runs the
    depthwise conv into a buffer of its own, and both backends agree."""
    model = cnnlang.load("network sep { input 16x3x3\n conv(16, 3x3, pad = 1, groups = 16) -> relu\n conv(4, 1x1) }")
    cpu, gpu = pair(model, cuda_backend, passes="all")
    x = batch(model)
    np.testing.assert_allclose(gpu.eval().forward(x), cpu.eval().forward(x), **TOLERANCE)
    assert model.optimise("all").graph.nodes["conv1"]["streamed_into"] == "conv2"
    assert "conv1" not in cpu.inference_plan.values and "conv1" in gpu.inference_plan.values


def test_training_forward_backward_equals_the_cpu(model, cuda_backend):
    cpu, gpu = pair(model, cuda_backend, input_grad=True)
    x, dy = batch(model), np.random.default_rng(2).standard_normal((2, 3))
    outputs = [net.train().forward(x) for net in (cpu, gpu)]
    np.testing.assert_allclose(outputs[1], outputs[0], **TOLERANCE)
    dx = [net.backward(dy) for net in (cpu, gpu)]
    np.testing.assert_allclose(dx[1], dx[0], **TOLERANCE)
    for name in cpu.trainable:
        np.testing.assert_allclose(cuda_backend.to_host(gpu.grads[name]), cpu.grads[name], **TOLERANCE, err_msg=name)


def test_device_changes_reach_the_host_copies_and_weight_files(tiny, cuda_backend, tmp_path):
    """What an optimiser does on the device (here: a parameter overwritten there in training mode)
    shows in state() and in the saved file, which a CPU network then runs the same."""
    _, gpu = pair(tiny, cuda_backend)
    x = batch(tiny)
    gpu.train().forward(x)  # training: the device copies are now the ones that count
    weight = gpu.device_params["fc1.weight"]
    cuda_backend.fill(weight, 0.25)
    assert not np.all(gpu.params["fc1.weight"] == 0.25)  # the host copy waits for pull
    assert np.all(gpu.state()["fc1.weight"] == 0.25)
    gpu.save(tmp_path / "w.safetensors")
    cpu = tiny.build(dtype="float64")
    cpu.load(tmp_path / "w.safetensors")
    np.testing.assert_allclose(gpu.eval().forward(x), cpu.eval().forward(x), **TOLERANCE)


def test_set_param_and_load_upload_at_once(tiny, cuda_backend, tmp_path):
    cpu, gpu = pair(tiny, cuda_backend, passes="all")
    x = batch(tiny)
    for net in (cpu, gpu):
        net.set_param("conv1.bias", np.arange(4.0))
    np.testing.assert_allclose(cuda_backend.to_host(gpu.device_params["conv1.bias"]), np.arange(4.0))
    np.testing.assert_allclose(gpu.forward(x), cpu.forward(x), **TOLERANCE)
    other = tiny.build(seed=5, dtype="float64")
    other.save(tmp_path / "other.safetensors")
    for net in (cpu, gpu):
        net.load(tmp_path / "other.safetensors")
    np.testing.assert_allclose(gpu.forward(x), other.eval().forward(x), **TOLERANCE)


def test_out_of_memory_names_the_layer_the_bytes_and_a_batch_that_fits(tiny, cuda_backend, monkeypatch):
    """A device that refuses allocations over 5,000 values and then reports 50 kB free (the
    simulator has no limit of its own, so one is imposed on the backend's allocator). The batch
    suggested is what 80% of the free memory holds of the plan's per-example node outputs."""
    net = tiny.build(backend=cuda_backend, dtype="float64")
    allocate = cuda_backend.empty

    def limited(shape, dtype):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes > 5000 * 8:
            raise OutOfDeviceMemory(nbytes)
        return allocate(shape, dtype)

    monkeypatch.setattr(cuda_backend, "empty", limited)
    monkeypatch.setattr(cuda_backend, "memory_info", lambda: (50_000, 2**30))
    with pytest.raises(OutOfDeviceMemory) as caught:
        net.forward(batch(tiny, n=64))
    message = str(caught.value)
    per_example = net.plan.activation_bytes(1)
    assert message.startswith("out of GPU memory in layer 'conv1': 72.0 KiB asked for"), message  # 64 x 6x6x4 x 8 bytes
    assert "batch 64 does not fit" in message and "48.8 KiB free" in message
    assert f"batch {40_000 // per_example} should" in message
    assert "\n" not in message
