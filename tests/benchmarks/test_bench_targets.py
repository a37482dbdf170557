"""benchmarks/bench_targets.py: the layers it times are the zoo's, its models compile, and one
cheap row runs end to end."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

import cnnlang

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_targets  # noqa: E402


def test_each_zoo_conv_layer_is_rebuilt_exactly_from_its_source():
    distinct = {}
    for name in cnnlang.zoo_names():
        graph = cnnlang.load(name).graph
        for node in graph.nodes:
            data = graph.nodes[node]
            if data.get("op") == "conv":
                shape = "x".join(map(str, graph.nodes[data["inputs"][0]]["shape"]))
                distinct.setdefault((shape, bench_targets.conv_source(data["layer"])), (f"{name}/{node}", data))
    assert len(distinct) > 100
    for (shape, source), (where, data) in distinct.items():
        one = cnnlang.load(f"network one {{ input {shape}\n layer: {source} }}").graph.nodes["layer"]
        assert (one["layer"], one["macs"]) == (data["layer"], data["macs"]), where


def test_the_cifar_resnet18_has_the_reference_parameter_count():
    model = cnnlang.load(bench_targets.HERE / "models" / "resnet18_cifar.cnn")
    assert model.totals["params"] == 11_173_962 and model.output_shape == (10,)


def test_a_row_whose_model_is_absent_is_skipped():
    case = replace(bench_targets.CASES[0], model="no_such_zoo_model")
    assert "skipped" in bench_targets.run_case(case, repeat=1, threads=1)


def test_the_lenet5_latency_row_end_to_end(capsys):
    pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert bench_targets.main(["--only", "lenet5-latency", "--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "AVX" in out or "?" in out
    row = next(line for line in out.splitlines() if line.startswith("| LeNet-5, b1"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].endswith("ms") and "ms (" in cells[2] and cells[3].endswith("ms") and cells[4].endswith("x ORT")
    assert cells[6] in ("yes", "**no**")
