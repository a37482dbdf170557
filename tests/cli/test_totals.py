"""``cnnlang summary A B`` (models compared) and ``summary --by-op`` (totals by layer type)."""

from __future__ import annotations

import json

import cnnlang
from cnnlang.cli import main
from cnnlang.cli.totals import totals_by_op


def test_summary_of_two_models_prints_both_totals_and_the_ratio(capsys):
    assert main(["summary", "lecture/inception_naive", "lecture/inception_reduced"]) == 0
    out = capsys.readouterr().out
    naive, reduced = cnnlang.load("lecture/inception_naive").totals, cnnlang.load("lecture/inception_reduced").totals
    # by hand: 1x1, 3x3 and 5x5 convolutions from 256 channels on 28x28
    assert naive["macs"] == 28 * 28 * 256 * (128 + 192 * 9 + 96 * 25) == 854_196_224
    assert f"{naive['params']:,}" in out and f"{reduced['macs']:,}" in out
    assert f"{reduced['macs'] / naive['macs']:.3f}x" in out
    assert (f"inception_reduced vs inception_naive: {naive['params'] / reduced['params']:.2f}x fewer parameters, "
            f"{naive['macs'] / reduced['macs']:.2f}x fewer MACs") in out


def test_summary_of_two_models_as_json_is_a_list(capsys):
    assert main(["summary", "lenet5", "alexnet", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in models] == ["lenet5", "alexnet"]


def test_summary_of_two_models_refuses_per_layer_options(capsys):
    assert main(["summary", "lenet5", "alexnet", "--explain"]) == 2
    assert "describe one model" in capsys.readouterr().err


def test_the_same_model_twice_is_the_same(capsys):
    assert main(["summary", "lenet5", "lenet5"]) == 0
    assert "lenet5 vs lenet5: the same parameters, the same MACs" in capsys.readouterr().out


def test_by_op_shares_of_vgg16():
    vgg = cnnlang.load("vgg16")
    rows = {op: (layers, params, macs) for op, layers, params, macs in totals_by_op(vgg)}
    assert set(rows) == {"conv", "fc"}
    assert rows["fc"][0] == 3 and rows["conv"][0] == 13
    assert rows["fc"][1] == (7 * 7 * 512 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
    assert rows["fc"][1] + rows["conv"][1] == vgg.totals["params"]
    assert vgg.graph.nodes["classifier1/fc6"]["params"] == 102_764_544  # named as in the released models


def test_by_op_prints_the_shares(capsys):
    assert main(["summary", "vgg16", "--by-op"]) == 0
    out = capsys.readouterr().out
    assert "fc   │      3 │ 123,642,856 │ 89.4% │" in out
    assert "  fc6       │ fc 4096" in out
