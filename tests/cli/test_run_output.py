"""``cnnlang run``'s views of the output itself: --print, --save-output; and inputs given as numbers or zoo: files."""

from __future__ import annotations

import numpy as np
import pytest

from cnnlang.cli import main
from cnnlang.feature_maps import format_values, grid_shape

EDGES = "network edges { input 1x6x5\n conv(2, 3x3, bias = false, weights = [[[[0, 0, 0], [0, 1, 0], [0, 0, 0]]], [[[1, 1, 1], [1, -8, 1], [1, 1, 1]]]]) }"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "edges.cnn").write_text(EDGES)
    return tmp_path


def test_print_shows_every_value_of_a_given_input(workdir, capsys):
    values = ",".join(str(v) for v in range(30))
    assert main(["run", "edges.cnn", "--input", values, "--print", "--repeat", "0"]) == 0
    out = capsys.readouterr().out
    x = np.arange(30.0).reshape(6, 5)
    identity = x[1:-1, 1:-1]  # channel 0 keeps the centre pixel; channel 1 is 0 on a linear ramp
    rows = "\n".join("      " + " ".join(f"{int(v):>2}" for v in row) for row in identity)
    assert f"input   1 x 1x6x5 ({values})" in out
    assert f"    channel 0:\n{rows}\n    channel 1:\n" in out
    assert "      0 0 0\n" * 4 in out


def test_the_moving_average_of_the_lecture(capsys):
    readings = "1.00,1.10,1.20,1.40,1.70,1.80,1.90,2.10,2.20,2.40,2.50,2.70"
    assert main(["run", "lecture/moving_average", "--input", readings, "--print", "--repeat", "0"]) == 0
    assert "      1.811 1.967 2.112 2.269 2.413 2.569\n" in capsys.readouterr().out


def test_a_wrong_number_of_values_says_what_was_expected(workdir, capsys):
    assert main(["run", "edges.cnn", "--input", "1,2,3"]) == 2
    assert "3 values given, but the model expects 1x6x5 = 30 values per example" in capsys.readouterr().err


def test_print_refuses_a_large_output(workdir, capsys):
    (workdir / "big.cnn").write_text("network big { input 3x64x64\n conv(8, 3x3) }")
    assert main(["run", "big.cnn", "--print"]) == 2
    assert ("--print shows at most 1,024 values, but this output holds 30,752 (1 x 8x62x62); use --save-output"
            in capsys.readouterr().err)


def test_save_output_writes_each_channel_stretched_to_black_and_white(workdir, capsys):
    from PIL import Image

    image = np.zeros((6, 5), np.uint8)
    image[:, 2:] = 255  # a vertical edge
    Image.fromarray(image).save("edge.png")
    assert main(["run", "edges.cnn", "--input", "edge.png", "--save-output", "out.png", "--repeat", "0"]) == 0
    assert "saved   out.png: 2 channels of 4x3 in a 1x2 grid" in capsys.readouterr().out
    with Image.open("out.png") as written:
        grid = np.asarray(written)
    assert grid.shape == (4, 3 + 2 + 3)
    assert np.all(grid[:, 3:5] == 255)  # the gap between channels
    centre = grid[:, :3]  # channel 0 is the input's centre: 0 then 1 -> black then white
    np.testing.assert_array_equal(centre, np.tile([0, 255, 255], (4, 1)))
    edge = grid[:, 5:].astype(int)  # +3 left of the edge, -3 right of it: white, black, mid-grey
    np.testing.assert_array_equal(edge, np.tile([255, 0, 128], (4, 1)))


def test_save_output_never_overwrites_without_force(workdir, capsys):
    (workdir / "out.png").write_bytes(b"keep me")
    assert main(["run", "edges.cnn", "--save-output", "out.png"]) == 2
    assert "out.png exists; give --force to overwrite it" in capsys.readouterr().err
    assert (workdir / "out.png").read_bytes() == b"keep me"
    assert main(["run", "edges.cnn", "--save-output", "out.png", "--force", "--repeat", "0"]) == 0
    assert (workdir / "out.png").read_bytes().startswith(b"\x89PNG")
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".out")] == []  # no temporary left


@pytest.mark.parametrize("model, options, message", [
    ("network v { input 8\n fc(3) }", [], "this model's output is 3; use --print"),
    (EDGES, ["--batch", "2"], "--save-output draws one example, but the input holds 2"),
    (EDGES, ["--save-output", "out.jpg"], "out.jpg: --save-output writes a .png file"),
])
def test_save_output_refuses_what_it_cannot_draw(workdir, capsys, model, options, message):
    (workdir / "m.cnn").write_text(model)
    args = ["run", "m.cnn", *options] + ([] if "--save-output" in options else ["--save-output", "out.png"])
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "out.png").exists()


def test_a_zoo_file_as_input(workdir, capsys):
    assert main(["run", "lecture/filters", "--input", "zoo:lecture/sample.png", "--repeat", "0"]) == 0
    assert "input   1 x 1x128x128 (zoo:lecture/sample.png)" in capsys.readouterr().out
    assert main(["run", "lecture/filters", "--input", "zoo:../pyproject.toml"]) == 2
    assert "zoo:../pyproject.toml: no such file in the zoo" in capsys.readouterr().err


def test_grid_is_one_row_up_to_four_channels_then_about_square():
    assert [grid_shape(c) for c in (1, 3, 4, 5, 16, 64, 65)] == [(1, 1), (1, 3), (1, 4), (2, 3), (4, 4), (8, 8), (8, 9)]


def test_format_values_of_a_vector_and_trailing_zeros():
    assert format_values(np.array([[0.5, -0.0, 2.0, 1 / 3]])) == ["  example 0:", "    0.5 0 2 0.3333"]
