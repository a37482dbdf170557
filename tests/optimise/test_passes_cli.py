"""`cnnlang passes`, the summary's memory line and `render --passes`: output and exit codes."""

from __future__ import annotations

import pytest

from cnnlang.cli import main

CHAIN = "network chain {\n input 3x8x8\n conv(4, 3x3, pad = 1) -> batchnorm -> relu\n maxpool(2x2) -> relu\n fc(2)\n}\n"


@pytest.fixture
def chain(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chain.cnn").write_text(CHAIN)
    return "chain.cnn"


def test_report_lists_changes_and_declines_by_line(chain, capsys):
    assert main(["passes", chain]) == 0
    out = capsys.readouterr().out
    assert "fold-batchnorm: 1 changed, 0 declined\n  line 3: batchnorm1 folded into conv1 (conv at line 3)" in out
    assert ("  line 4: relu2 not fused: its input comes from maxpool at line 4, not a conv or fully "
            "connected layer  [declined]") in out
    assert "dead-code: nothing to do" in out
    assert "layers: 6 before, 4 after" in out
    assert "peak activation memory (batch 1, float32): before planning" in out


def test_long_reports_are_cut_unless_verbose(capsys):
    assert main(["passes", "resnet50"]) == 0
    out = capsys.readouterr().out
    assert "fold-batchnorm: 53 changed, 0 declined" in out and "… and 33 more (--verbose lists them all)" in out
    assert main(["passes", "resnet50", "--verbose"]) == 0
    assert "more (--verbose" not in capsys.readouterr().out


def test_pass_selection(chain, capsys):
    assert main(["passes", chain, "--passes", "fuse-activation", "--no-pass", "plan-memory"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("chain: 1 of 10 passes (fuse-activation)")
    assert "not planned (plan-memory was not run)" in out


def test_unknown_pass_is_a_usage_error(chain, capsys):
    assert main(["passes", chain, "--passes", "fold"]) == 2
    assert capsys.readouterr().err == (
        "cnnlang: error: unknown pass 'fold'; the passes are: inference, dead-code, fold-batchnorm, "
        "fuse-activation, fuse-add-relu, fuse-residual, fuse-depthwise, eliminate-concat, winograd, plan-memory\n")


def test_dump_ir_before_and_after_a_pass(chain, capsys):
    assert main(["passes", chain, "--dump-ir", "before"]) == 0
    assert "%batchnorm1 = batchnorm(%conv1) : 4x8x8  @3" in capsys.readouterr().out
    assert main(["passes", chain, "--dump-ir", "after=fuse-activation"]) == 0
    out = capsys.readouterr().out
    assert "%conv1 = conv[filters=4, kernel=3x3, pad=1]+batchnorm+relu(%input) : 4x8x8  @3" in out
    assert "slot=" not in out  # plan-memory runs after fuse-activation
    assert main(["passes", chain, "--dump-ir", "after=plan-memory", "--format", "dot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('digraph "chain" {') and "conv 3x3, 4 + bn + relu" in out


@pytest.mark.parametrize("argv, message", [
    (["--dump-ir", "after=fold"], "--dump-ir takes 'before' or 'after=PASS'"),
    (["--dump-ir", "after=dead-code", "--no-pass", "dead-code"], "that pass is not among those run"),
    (["--format", "dot"], "--format applies to --dump-ir"),
])
def test_bad_dump_requests_are_usage_errors(chain, capsys, argv, message):
    assert main(["passes", chain, *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_broken_model_is_a_model_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.cnn").write_text("network n {\n input 3x2x2\n conv(4, 3x3)\n}\n")
    assert main(["passes", "bad.cnn"]) == 1
    assert "bad.cnn:3:" in capsys.readouterr().err


def test_summary_reports_planned_peak_memory(capsys):
    assert main(["summary", "googlenet", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "peak activation memory (batch 1, float32): before planning 49.34 MB, after 4.82 MB (−90%)" in out


def test_render_draws_fused_nodes(chain, capsys):
    assert main(["render", chain, "-o", "plain.dot"]) == 0
    assert main(["render", chain, "-o", "fused.dot", "--passes", "all"]) == 0
    plain, fused = open("plain.dot").read(), open("fused.dot").read()
    assert "+ bn" not in plain and '"batchnorm1"' in plain
    assert "conv 3x3, 4 + bn + relu" in fused and '"batchnorm1"' not in fused and "fused layers (bold)" in fused
    assert main(["render", chain, "-o", "x.dot", "--passes", "nope"]) == 2
