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


def test_frameworks_take_turns_and_the_ratio_is_the_median_of_the_rounds(monkeypatch):
    import cnnlang.compare.worker as worker

    # A slow spell falls on cnnlang's and PyTorch's third round but not ORT's: the median of the
    # rounds' ratios leaves that round out.
    seconds = {"cnnlang": [1.0, 1.0, 3.0], "torch": [2.0, 2.0, 6.0], "onnxruntime": [4.0, 4.0, 4.0]}
    calls = []

    def fake_time_in_subprocess(framework, model, **options):
        calls.append(framework)
        return {"seconds": seconds[framework][sum(call == framework for call in calls) - 1]}

    monkeypatch.setattr(worker, "time_in_subprocess", fake_time_in_subprocess)
    case = next(case for case in bench_targets.CASES if case.name == "resnet50-infer")  # against ORT
    row = bench_targets.run_case(case, repeat=1, threads=1, rounds=3)
    assert calls == ["cnnlang", "torch", "onnxruntime", "onnxruntime", "torch", "cnnlang", "cnnlang", "torch", "onnxruntime"]
    assert row["round_ratios"] == [4.0, 4.0, 4.0 / 3.0] and row["ratio"] == 4.0 and row["met"]
    assert row["cnnlang"]["seconds"] == 1.0 and row["torch"]["seconds"] == 2.0
    assert bench_targets.spread(row) == " (1.33-4.00)"


def test_the_lowest_layers_are_also_timed_in_onnxruntime(monkeypatch):
    import cnnlang.compare.worker as worker

    layers = [{"first_in": f"net/conv{i}", "input": [8, 6, 6], "conv": f"conv({i + 1}, 1)", "macs": 1e9,
               "gflops": 10.0 + i, "gemm_gflops": 100.0, "gemm_share": (10.0 + i) / 100}
              for i in range(bench_targets.LOWEST_SHOWN + 2)]
    result = {"batch": 8, "layers": layers[::-1], "gemm_gflops": 100.0, "gemm_range": [90.0, 110.0],
              "gemm_before_after": [95.0, 105.0]}
    requests = []

    def fake_time_in_subprocess(framework, model, **options):
        requests.append((framework, model, options))
        if "conv(2, 1)" in model:
            raise RuntimeError("timing it in onnxruntime failed: no such op")
        return {"seconds": 0.05}  # 2e9 flops in 0.05 s: 40 GFLOP/s

    monkeypatch.setattr(worker, "time_in_subprocess", fake_time_in_subprocess)
    bench_targets.time_lowest_in_onnxruntime(result, repeat=2, threads=1)
    timed = [layer for layer in layers if "onnxruntime" in layer]
    assert timed == layers[: bench_targets.LOWEST_SHOWN]
    assert timed[0]["onnxruntime"] == {"seconds": 0.05, "gflops": 40.0, "gemm_share": 0.4}
    framework, model, options = requests[0]
    assert framework == "onnxruntime" and options == {"batch": 8, "repeat": 2, "threads": 1, "op": "Conv"}
    assert model == "network one { input 8x6x6\n layer: conv(1, 1) }"
    text = bench_targets.slowest_convs(result)
    assert "- net/conv0: 8x6x6 conv(1, 1): 10.0 GFLOP/s, 10% of 100; ORT 40.0 GFLOP/s, 40%" in text
    # A layer ORT could not time says why; the others are still timed.
    assert layers[1]["onnxruntime"] == {"error": "timing it in onnxruntime failed: no such op"}
    assert "- net/conv1: 8x6x6 conv(2, 1): 11.0 GFLOP/s, 11% of 100; ORT: timing it in onnxruntime failed" in text
    assert text.count("\n- ") == bench_targets.LOWEST_SHOWN  # one line each, under the heading


def test_the_lenet5_latency_row_end_to_end(capsys):
    pytest.importorskip("torch", reason="torch is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    assert bench_targets.main(["--only", "lenet5-latency", "--repeat", "1", "--rounds", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "AVX" in out or "?" in out
    row = next(line for line in out.splitlines() if line.startswith("| LeNet-5, b1"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].endswith("ms") and "ms (" in cells[2] and cells[3].endswith("ms") and "x ORT (" in cells[4]
    assert cells[6] in ("yes", "**no**")


def test_the_conv_layer_worker_takes_each_layers_median_over_rounds(monkeypatch):
    """LeNet-5's three conv layers, two rounds over all of them: each layer keeps both rounds'
    shares, against the rate measured beside it (here a stub rising by 10 GFLOP/s a call), and its
    share is their median."""
    import cnnlang.compare.timing as timing

    rates = iter(range(100, 10_000, 10))
    monkeypatch.setattr(timing, "gemm_gflops", lambda repeat=3: float(next(rates)))
    monkeypatch.setattr(cnnlang, "zoo_names", lambda: ["lenet5"])
    monkeypatch.setattr(bench_targets, "LAYER_AT_LEAST_S", 0.0)
    result = bench_targets.zoo_convs_worker(2, rounds=2)
    assert [layer["first_in"] for layer in result["layers"]] == ["lenet5/c1", "lenet5/c3", "lenet5/c5"]
    assert result["rounds"] == 2 and result["gemm_before_after"] == [100.0, 160.0]
    for layer in result["layers"]:
        assert len(layer["round_shares"]) == 2 and layer["seconds"] > 0
        assert layer["gemm_share"] == pytest.approx(sum(layer["round_shares"]) / 2)  # the median of two
    assert result["layers"][0]["gemm_gflops"] == pytest.approx((105 + 135) / 2)  # rounds' rates 105 and 135
