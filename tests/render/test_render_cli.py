"""`cnnlang render`: formats, overwriting, missing Graphviz, broken models, notebooks."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from cnnlang import load
from cnnlang.cli import main
from cnnlang.render import to_svg

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")

RESIDUAL = """
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

BROKEN = """
network broken {
    input 3x8x8
    a: conv(8, 3x3)
    concat {
        branch { conv(4, 1x1) }
        branch { maxpool(2x2) }
    }
    fc(10)
}
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.cnn").write_text(RESIDUAL)
    (tmp_path / "broken.cnn").write_text(BROKEN)
    return tmp_path


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_dot_output_needs_no_graphviz(files, no_graphviz, capsys):
    assert main(["render", "small.cnn", "-o", "small.dot"]) == 0
    text = (files / "small.dot").read_text()
    assert text.startswith('digraph "small" {') and "basic1/add1" in text
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("suffix", ["svg", "png", "pdf"])
def test_missing_graphviz_says_how_to_install_it(files, no_graphviz, capsys, suffix):
    assert main(["render", "small.cnn", "-o", f"small.{suffix}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "'dot'" in err and "apt-get install graphviz" in err and "brew install graphviz" in err and "conda" in err
    assert not (files / f"small.{suffix}").exists()


def test_repr_svg_is_none_without_graphviz(no_graphviz):
    model = load(RESIDUAL)
    assert model._repr_svg_() is None and to_svg(model) is None


@needs_dot
def test_svg_is_well_formed_xml(files):
    assert main(["render", "small.cnn", "-o", "small.svg"]) == 0
    root = ET.parse(files / "small.svg").getroot()
    assert root.tag.endswith("svg")
    text = (files / "small.svg").read_text()
    assert "basic(32, stride=2)" in text and "16x32x32" in text


@needs_dot
def test_png_and_pdf(files):
    assert main(["render", "lenet5", "-o", "lenet5.png", "--depth", "1", "--rankdir", "LR"]) == 0
    assert (files / "lenet5.png").read_bytes().startswith(b"\x89PNG")
    assert main(["render", "lenet5", "-o", "lenet5.pdf"]) == 0
    assert (files / "lenet5.pdf").read_bytes().startswith(b"%PDF")


@needs_dot
def test_repr_svg_in_notebooks():
    svg = load("lenet5")._repr_svg_()
    assert ET.fromstring(svg).tag.endswith("svg") and "c1" in svg


def test_existing_file_is_kept_without_force(files, capsys):
    target = files / "small.dot"
    target.write_text("keep me")
    assert main(["render", "small.cnn", "-o", "small.dot"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err
    assert target.read_text() == "keep me"
    assert main(["render", "small.cnn", "-o", "small.dot", "--force"]) == 0
    assert target.read_text().startswith("digraph")


@pytest.mark.parametrize("name", ["small.jpg", "small", "small.SVGZ"])
def test_unknown_format_is_a_usage_error(files, capsys, name):
    assert main(["render", "small.cnn", "-o", name]) == 2
    err = capsys.readouterr().err
    assert "cannot tell the format" in err and ".svg" in err and ".dot" in err


def test_broken_model_is_written_then_exits_1(files, capsys):
    assert main(["render", "broken.cnn", "-o", "broken.dot"]) == 1
    err = capsys.readouterr().err
    assert "broken.cnn:5:5: error: concat 'concat1'" in err and "Traceback" not in err
    text = (files / "broken.dot").read_text()
    assert '"concat1"' in text and "is 4x6x6 but" in text and "#c0392b" in text


def test_unknown_highlight_lists_close_names(files, capsys):
    assert main(["render", "small.cnn", "-o", "x.dot", "--highlight", "basic9"]) == 2
    err = capsys.readouterr().err
    assert "no layer or block named 'basic9'" in err and "basic1" in err
    assert not (files / "x.dot").exists()
    assert main(["render", "small.cnn", "-o", "x.dot", "--highlight", "stem", "--highlight", "basic2"]) == 0


def test_bad_depth_and_unknown_model(files, capsys):
    assert main(["render", "small.cnn", "-o", "x.dot", "--depth", "0"]) == 2
    assert "--depth" in capsys.readouterr().err
    assert main(["render", "nosuch", "-o", "x.dot"]) == 2


def test_syntax_errors_write_nothing(files, capsys):
    (files / "bad.cnn").write_text("network bad {\n    input 3x8x8\n    conv(8, 3x3) -> rleu\n}\n")
    assert main(["render", "bad.cnn", "-o", "bad.dot"]) == 1
    assert "rleu" in capsys.readouterr().err
    assert not (files / "bad.dot").exists()


def test_python_api_render(tmp_path):
    from cnnlang.render import RenderError, render

    model = load(RESIDUAL)
    path = render(model, tmp_path / "small.dot", depth=1)
    assert path.read_text().startswith('digraph "small"')
    with pytest.raises(RenderError, match="force"):
        render(model, tmp_path / "small.dot")
    assert render(model, tmp_path / "small.dot", force=True, rankdir="LR").read_text().count('rankdir="LR"') == 1
