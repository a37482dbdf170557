"""The references compute what cnnlang computes: the same model, weights and input."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.compare.frameworks import bench_input, cnnlang_seconds, onnxruntime_session, torch_seconds
from cnnlang.compare.worker import time_in_subprocess

SMALL = "network small { input 3x10x10\n conv(4, 3x3, pad = 1) -> batchnorm -> relu\n maxpool(2x2)\n fc(5) }"


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
