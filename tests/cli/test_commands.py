"""The check, summary and zoo commands: output, exit codes, and no tracebacks."""

from __future__ import annotations

import json

import pytest

from cnnlang import zoo_names
from cnnlang.cli import main

GOOD = """
from "resnet_blocks.cnn" import basic    # the zoo's ResNet basic block
network small {
    input 3x32x32
    stem: conv(16, 3x3, pad = 1) -> relu
    basic(16) * 2
    basic(32, stride = 2)
    globalavgpool
    fc(10)
}
"""

BAD = """
network broken {
    input 3x32x32
    conv(16, 3x3) -> relu
    conv(16, 3x3) -> rleu
}
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.cnn").write_text(GOOD)
    (tmp_path / "bad.cnn").write_text(BAD)
    return tmp_path


def test_check_is_silent_on_success(files, capsys):
    assert main(["check", "good.cnn"]) == 0
    assert capsys.readouterr() == ("", "")


def test_check_reports_every_bad_file(files, capsys):
    (files / "bad2.cnn").write_text(BAD.replace("rleu", "relu").replace("3x32x32", "3x2x2"))
    assert main(["check", "bad.cnn", "good.cnn", "bad2.cnn"]) == 1
    err = capsys.readouterr().err
    assert "bad.cnn:5:22: error: unknown layer or block 'rleu'; did you mean 'relu'?" in err
    assert "bad2.cnn:4:5: error: conv 'conv1': output height would be (2 - 3 + 2*0)/1 + 1 = 0" in err


def test_check_missing_file_is_a_usage_error(files, capsys):
    assert main(["check", "nothing.cnn"]) == 2
    assert "no file or zoo model named 'nothing.cnn'" in capsys.readouterr().err


def test_binary_file_is_a_clear_error(files, capsys):
    (files / "weights.cnn").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    assert main(["check", "weights.cnn"]) == 1
    assert "weights.cnn:1:1: error: byte 0x89 is not UTF-8 text" in capsys.readouterr().err


def test_bad_input_size_is_a_usage_error(files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", "good.cnn", "--input", "3xfoo"])
    assert exit_info.value.code == 2
    assert "expected a size such as 3x224x224" in capsys.readouterr().err


def test_summary_json_fields(files, capsys):
    assert main(["summary", "good.cnn", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["name"] == "small"
    assert report["input_shape"] == [3, 32, 32]
    assert report["output_shape"] == [10]
    # stem conv 3*9*16+16 = 448; two basic(16): 2 * (2 * 16*16*9 + 2 * 32) = 9,344;
    # basic(32, stride 2): 16*32*9 + 32*32*9 + 2*64 + projection 16*32 + 64 = 14,528;
    # fc 32*10 + 10 = 330.
    assert report["total_params"] == 448 + 9344 + 14528 + 330
    assert report["trainable_params"] == report["total_params"]
    # Running mean and variance of 4 + 2 + 1 batchnorms over their channels.
    assert report["buffers"] == 2 * (16 * 4 + 32 * 3)
    names = [layer["name"] for layer in report["layers"]]
    assert names[:3] == ["input", "stem", "relu1"]
    assert "basic3/shortcut_conv1" in names
    for layer in report["layers"]:
        assert set(layer) >= {"name", "op", "output_shape", "params", "macs", "line"}
    stem = report["layers"][1]
    assert stem["line"] == 5 and stem["output_shape"] == [16, 32, 32] and stem["macs"] == 16 * 32 * 32 * 27


def test_summary_json_honours_depth(files, capsys):
    assert main(["summary", "good.cnn", "--json", "--depth", "1"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    assert [(layer["name"], layer["kind"]) for layer in layers] == [
        ("input", "layer"), ("stem", "layer"), ("relu1", "layer"), ("basic1", "block"), ("basic2", "block"),
        ("basic3", "block"), ("globalavgpool1", "layer"), ("fc1", "layer"),
    ]
    assert layers[5]["params"] == 14528 and layers[5]["label"] == "basic(32, stride=2)"


def test_summary_input_override(files, capsys):
    assert main(["summary", "good.cnn", "--json", "--input", "3x64x64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["input_shape"] == [3, 64, 64]
    assert report["layers"][1]["macs"] == 16 * 64 * 64 * 27


def test_summary_depth_folds_blocks(files, capsys):
    assert main(["summary", "good.cnn", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "basic(16)" in out and "basic(32, stride=2)" in out
    assert "shortcut_conv1" not in out  # folded into basic3's row
    assert main(["summary", "good.cnn"]) == 0
    assert "shortcut_conv1" in capsys.readouterr().out


def test_summary_explain_shows_arithmetic(capsys):
    assert main(["summary", "alexnet_paper", "--explain"]) == 0
    assert "H = W = (227 - 11 + 2*0)/4 + 1 = 55" in capsys.readouterr().out


def test_summary_explain_names_layers_in_blocks_by_their_path(capsys):
    assert main(["summary", "resnet18", "--explain"]) == 0
    out = capsys.readouterr().out.split("Output sizes:")[1]
    assert "  basic8/conv2 " in out and "\n  conv2 " not in out


def test_summary_of_a_broken_model_fails_cleanly(files, capsys):
    assert main(["summary", "bad.cnn"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "error: unknown layer or block 'rleu'" in captured.err


def test_zoo_lists_models(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "25,557,032" in out
    assert "lenet5" in out and "61,706" in out


def test_a_file_that_defines_nothing_is_an_error(files, capsys):
    (files / "empty.cnn").write_text("")
    (files / "comment.cnn").write_text("# a model, some day\n")
    assert main(["check", "empty.cnn", "comment.cnn"]) == 1
    err = capsys.readouterr().err
    message = "error: this file defines no network and no blocks; start a model with 'network NAME { input ... }'"
    assert f"empty.cnn:1:1: {message}" in err and f"comment.cnn:1:1: {message}" in err
    assert main(["summary", "empty.cnn"]) == 1
    assert message in capsys.readouterr().err


def test_zoo_citations_are_whole():
    from cnnlang.cli.zoo import _citation
    from cnnlang.model import resolve, zoo_names

    assert _citation(resolve("resnet20")) == (
        'ResNet-20 for CIFAR-10 — K. He, X. Zhang, S. Ren, J. Sun, "Deep Residual Learning for Image Recognition", '
        "CVPR 2016, Section 4.2")
    for name in zoo_names():
        assert _citation(resolve(name)).count('"') == 2, name  # no title cut off


def test_error_paths_are_relative_to_the_working_directory(files, capsys):
    (files / "models").mkdir()
    (files / "models" / "blocks.cnn").write_text("block b(c) { conv(c, 3x3) -> rleu }\n")
    (files / "models" / "net.cnn").write_text('import "blocks.cnn"\nnetwork n { input 3x8x8\n b(4) }\n')
    assert main(["check", str(files / "models" / "net.cnn")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("models/blocks.cnn:1:30: error: unknown layer or block 'rleu'")
    assert "models/net.cnn:3:2: note: in block 'b' used here" in err


def test_tables_fit_an_80_column_terminal_without_breaking_tokens(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["summary", "googlenet", "--depth", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    table = [line for line in lines if "│" in line]
    assert all(len(line.rstrip()) <= 80 for line in lines)
    assert len(table) == 20  # one line per row: nothing wrapped
    assert "64x112x112" in table[1] and "118,013,952" in table[1]  # shapes and numbers whole
    cut = [line.split("│")[1].strip() for line in table if "…" in line]
    assert cut and all(cell.endswith("…") for cell in cut)  # an op is cut at the end, with an ellipsis
    assert main(["zoo"]) == 0
    zoo = capsys.readouterr().out.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in zoo) and len(zoo) == 2 + len(zoo_names())  # a line per model
