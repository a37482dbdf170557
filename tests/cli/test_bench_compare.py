"""``cnnlang bench``: the references (--compare) and each layer's share of the GEMM rate."""

from __future__ import annotations

import importlib.util
import json

import pytest

from cnnlang.cli import main

TINY = "network tiny { input 1x8x8\n conv(4, 3x3) -> relu\n maxpool(2x2)\n fc(3) }"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.cnn").write_text(TINY)
    return tmp_path


def test_each_layer_reports_its_share_of_the_gemm_rate_measured_in_the_run(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--train", "--repeat", "1", "--passes", "none", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["gemm_gflops"] > 0
    conv = next(row for row in result["layers"] if row["layer"] == "conv1")
    assert conv["forward_gemm_percent"] == pytest.approx(100 * conv["forward_gflops"] / result["gemm_gflops"])
    assert conv["backward_gemm_percent"] == pytest.approx(100 * conv["backward_gflops"] / result["gemm_gflops"])
    relu = next(row for row in result["layers"] if row["layer"] == "relu1")
    assert relu["forward_gemm_percent"] is None


def test_the_table_has_the_gemm_column_and_says_what_it_is_measured_against(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "% GEMM" in out and "float32 NumPy matmul's" in out and "measured in this run" in out


def test_compare_times_torch_and_onnxruntime_and_prints_the_ratios(workdir, capsys):
    pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    argv = ["bench", "tiny.cnn", "--batch", "2", "--repeat", "2", "--train", "--compare", "torch,onnxruntime"]
    assert main([*argv, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    torch, ort = result["references"]["torch"], result["references"]["onnxruntime"]
    assert set(torch) == {"inference", "train"} and set(ort) == {"inference"}
    import numba

    for timing, cnnlang_s in ((torch["inference"], result["optimised"]["inference_s"]), (torch["train"], result["train_step_s"]),
                              (ort["inference"], result["optimised"]["inference_s"])):
        assert timing["threads"] == numba.get_num_threads()
        assert timing["ratio"] == pytest.approx(timing["seconds"] / cnnlang_s)
    layouts = torch["inference"]["layouts"]
    assert set(layouts) == {"NCHW", "channels-last"} and torch["inference"]["seconds"] == min(layouts.values())
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "speed ratio cnnlang/PyTorch" in out and "speed ratio cnnlang/ONNX Runtime" in out and "training step" in out


@pytest.mark.parametrize("missing", ["torch", "onnxruntime"])
def test_a_missing_framework_is_a_one_line_error(workdir, capsys, monkeypatch, missing):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else find_spec(name, *a))
    # Naming the missing framework first: the check stops at the first one missing, and the other
    # may be absent too on a machine without the test's optional frameworks.
    others = [name for name in ("torch", "onnxruntime") if name != missing]
    assert main(["bench", "tiny.cnn", "--compare", ",".join([missing, *others])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--compare {missing} needs {missing}, which is not installed: pip install" in err


def test_an_unknown_reference_is_a_one_line_error(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--compare", "torch,tensorflow"]) == 2
    err = capsys.readouterr().err
    assert err == "cnnlang: error: --compare takes a comma-separated list of torch, onnxruntime; got 'torch,tensorflow'\n"


def test_compare_is_float32_only(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--compare", "onnxruntime", "--dtype", "float64"]) == 2
    assert capsys.readouterr().err == "cnnlang: error: --compare times float32 in every framework; leave out --dtype float64\n"
