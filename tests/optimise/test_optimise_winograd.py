"""The ``winograd`` pass: which convolutions it marks, why it declines the others, and the IR
checks of the ``algorithm`` attribute."""

from __future__ import annotations

import pytest

import cnnlang
from cnnlang import ir
from cnnlang.passes.choose_algorithm import MIN_CHANNELS
from cnnlang.passes.optimise import optimise


def optimised(source: str, *names: str):
    return optimise(cnnlang.load(source).graph, names or ("winograd",))


def log(graph, status: str) -> list[str]:
    return [e["message"] for e in graph.graph["pass_log"] if e["pass"] == "winograd" and e["status"] == status]


SOURCE = """network n {
    input 64x16x16
    a: conv(64, 3x3, pad = 1)
    b: conv(64, 3x3, stride = 2, pad = 1)
    c: conv(64, 1x1)
    d: conv(64, 3x3, pad = 2, dilation = 2)
    e: conv(64, 3x3, pad = 1, groups = 2)
    f: conv(64, 5x5, pad = 2)
    g: conv(64, 3x3)
    h: conv(32, 3x3, pad = 1)
    conv(64, 3x3, pad = 1)
}"""


def test_marks_3x3_stride_1_convs_and_says_why_not_the_others():
    graph = optimised(SOURCE)
    marked = sorted(n for n in graph.nodes if graph.nodes[n].get("algorithm"))
    assert marked == ["a", "g"]  # g: no padding, a 6x6 output
    assert graph.nodes["a"]["algorithm"] == "winograd"
    assert log(graph, "changed") == [
        "conv at line 3 runs as Winograd F(2x2, 3x3) (64 -> 64 channels, 16x16)",
        "conv at line 9 runs as Winograd F(2x2, 3x3) (64 -> 64 channels, 6x6)",
    ]
    too_few = f"fewer than {MIN_CHANNELS}, where Winograd measured no faster (benchmarks/bench_winograd.py)"
    assert log(graph, "skipped") == [
        "conv at line 4 keeps im2col: stride 2x2, not 1",
        "conv at line 5 keeps im2col: kernel 1x1, not 3x3",
        "conv at line 6 keeps im2col: dilation 2x2, not 1",
        "conv at line 7 keeps im2col: 2 groups, not 1",
        "conv at line 8 keeps im2col: kernel 5x5, not 3x3",
        f"conv at line 10 keeps im2col: 64 -> 32 channels: 32 output channels, {too_few}",
        f"conv at line 11 keeps im2col: 32 -> 64 channels: 32 input channels, {too_few}",
    ]


def test_conv1d_is_declined():
    graph = optimised("network n { input 64x64\n conv1d(64, 3, pad = 1) }")
    assert log(graph, "skipped") == ["conv1d at line 2 keeps im2col: Winograd is implemented for 2-D convolutions only, not conv1d"]
    assert log(graph, "changed") == []


def test_dump_shows_the_algorithm():
    text = ir.dump(optimised(SOURCE))
    assert "%a = conv[filters=64, kernel=3x3, pad=1](%input) : 64x16x16  @3  {winograd}" in text
    assert "%b = conv[filters=64, kernel=3x3, stride=2, pad=1](%a) : 64x8x8  @4\n" in text


@pytest.mark.parametrize("node", ["b", "c", "d", "e", "f"])
def test_verify_rejects_the_algorithm_on_an_ineligible_conv(node):
    graph = optimised(SOURCE)
    graph.nodes[node]["algorithm"] = "winograd"
    with pytest.raises(AssertionError, match=f"{node}: algorithm winograd on a conv that is not 3x3"):
        ir.verify(graph)


def test_verify_rejects_unknown_algorithms_and_non_convs():
    graph = optimised(SOURCE)
    graph.nodes["a"]["algorithm"] = "fft"
    with pytest.raises(AssertionError, match="a: unknown algorithm 'fft'"):
        ir.verify(graph)
    graph = optimised("network n { input 64x16x16\n conv(64, 3x3, pad = 1) -> relu }", "winograd")
    graph.nodes["relu1"]["algorithm"] = "winograd"
    with pytest.raises(AssertionError, match="relu1: algorithm winograd on a relu"):
        ir.verify(graph)


def test_resnet50_marks_its_stride_1_3x3_convs():
    graph = optimise(cnnlang.load("resnet50").graph)
    assert len(log(graph, "changed")) == 13  # 16 3x3 convs, 3 of them stride 2
    assert all("stride 2x2" in m or "kernel" in m for m in log(graph, "skipped"))
