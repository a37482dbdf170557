"""The references compute what cnnlang computes: the same model, weights and input."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.compare.frameworks import (bench_input, cnnlang_seconds, onnxruntime_op_seconds, onnxruntime_session,
                                        torch_seconds)
from cnnlang.compare.worker import time_in_subprocess

SMALL = "network small { input 3x10x10\n conv(4, 3x3, pad = 1) -> batchnorm -> relu\n maxpool(2x2)\n fc(5) }"
DEPTHWISE = "network one { input 16x12x12\n layer: conv(16, 3x3, pad = same, groups = 16, bias = false) }"


def test_onnxruntime_runs_the_export_of_the_same_weights_on_the_bench_input():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model = cnnlang.load(SMALL)
    session = onnxruntime_session(model, seed=3, threads=1)
    x = bench_input(model, 4, seed=3)
    (theirs,) = session.run(None, {session.get_inputs()[0].name: x})
    ours = model.build(seed=3).eval().forward(x)
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)


def test_torch_times_both_layouts_of_inference_and_training():
    pytest.importorskip("torch", reason="torch is not installed")
    model = cnnlang.load(SMALL)
    for train in (False, True):
        timing = torch_seconds(model, 2, train=train, repeat=1, seed=0, threads=1)
        assert timing["threads"] == 1 and set(timing["layouts"]) == {"NCHW", "channels-last"}
        assert timing["seconds"] == timing["layouts"][timing["best"]] == min(timing["layouts"].values())


def test_cnnlang_times_inference_and_a_training_step():
    model = cnnlang.load(SMALL)
    assert cnnlang_seconds(model, 2, train=False, repeat=1, seed=0)["seconds"] > 0
    assert cnnlang_seconds(model, 2, train=True, repeat=1, seed=0)["seconds"] > 0


def test_a_subprocess_timing_names_the_model_and_framework_when_it_fails(tmp_path):
    with pytest.raises(RuntimeError, match=r"timing .*missing.cnn in cnnlang failed: .*missing"):
        time_in_subprocess("cnnlang", tmp_path / "missing.cnn", batch=1, repeat=1, threads=1)


def test_onnxruntime_times_an_op_from_its_own_profile():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model = cnnlang.load(DEPTHWISE)
    timing = onnxruntime_op_seconds(model, 2, op="Conv", repeat=3, seed=0, threads=1)
    assert timing["op"] == "Conv" and timing["nodes"] == 1 and 0 < timing["seconds"] < 1
    # ONNX Runtime runs layout changes around a lone conv; a missing op names what did run.
    with pytest.raises(ValueError, match=r"ran no MaxPool node; it ran .*Conv"):
        onnxruntime_op_seconds(model, 2, op="MaxPool", repeat=1, seed=0, threads=1)


def test_an_ops_own_time_is_asked_of_onnxruntime_only():
    with pytest.raises(ValueError, match="ONNX Runtime's profile, not from torch"):
        time_in_subprocess("torch", DEPTHWISE, batch=1, repeat=1, threads=1, op="Conv")


def test_a_subprocess_times_a_networks_source_and_an_op_in_it():
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    timing = time_in_subprocess("onnxruntime", DEPTHWISE, batch=2, repeat=1, threads=1, op="Conv")
    assert timing["op"] == "Conv" and timing["nodes"] == 1 and timing["seconds"] > 0
