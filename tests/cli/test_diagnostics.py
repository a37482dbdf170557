"""One golden diagnostic per kind of error, exactly as `cnnlang check` prints it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cnnlang.cli import main

CASES = {
    "syntax: missing comma, said in words": (
        """
        network n {
            input 3x32x32
            conv(16, 3x3 pad = 1)
        }
        """,
        """
        model.cnn:3:18: error: expected ')' or ',', found 'pad'
            3 |     conv(16, 3x3 pad = 1)
              |                  ^~~
        """,
    ),
    "syntax: unclosed brace at end of file": (
        """
        network n {
            input 3x32x32
            relu
        """,
        """
        model.cnn:3:9: error: expected a layer, a block call or '}', found the end of the file
            3 |     relu
              |         ^
        model.cnn:1:11: note: this '{' is never closed
            1 | network n {
              |           ^
        """,
    ),
    "syntax: stray character": (
        """
        network n {
            input 3x32x32
            conv(16, 3x3) $ relu
        }
        """,
        """
        model.cnn:3:19: error: unexpected character '$'
            3 |     conv(16, 3x3) $ relu
              |                   ^
        """,
    ),
    "unknown layer suggests the closest name": (
        """
        network n {
            input 3x32x32
            covn(16, 3x3)
        }
        """,
        """
        model.cnn:3:5: error: unknown layer or block 'covn'; did you mean 'conv'?
            3 |     covn(16, 3x3)
              |     ^~~~~~~~~~~~~
        """,
    ),
    "unknown block suggests a user block": (
        """
        block stem(c) { conv(c, 3x3) }
        network n {
            input 3x32x32
            stme(16)
        }
        """,
        """
        model.cnn:4:5: error: unknown layer or block 'stme'; did you mean 'stem'?
            4 |     stme(16)
              |     ^~~~~~~~
        """,
    ),
    "unknown argument suggests the closest one": (
        """
        network n {
            input 3x32x32
            conv(16, 3x3, strid = 2)
        }
        """,
        """
        model.cnn:3:19: error: conv has no argument 'strid'; did you mean 'stride'?
            3 |     conv(16, 3x3, strid = 2)
              |                   ^~~~~~~~~
        """,
    ),
    "argument of the wrong kind": (
        """
        network n {
            input 3x32x32
            conv(16.5, 3x3)
        }
        """,
        """
        model.cnn:3:10: error: argument 'filters' of conv: expected a whole number, got 16.5
            3 |     conv(16.5, 3x3)
              |          ^~~~
        """,
    ),
    "unknown parameter name inside a block, with the call site": (
        """
        block b(c) {
            conv(cc, 3x3)
        }
        network n {
            input 3x32x32
            b(16)
        }
        """,
        """
        model.cnn:2:10: error: unknown name 'cc'; did you mean 'c'?
            2 |     conv(cc, 3x3)
              |          ^~
        model.cnn:6:5: note: in block 'b' used here
            6 |     b(16)
              |     ^~~~~
        """,
    ),
    "output size below one shows the arithmetic": (
        """
        network n {
            input 3x8x8
            maxpool(2x2)
            conv(8, 7x7)
        }
        """,
        """
        model.cnn:4:5: error: conv 'conv1': output height would be (4 - 7 + 2*0)/1 + 1 = -2: the 7-wide window does not fit the 4-wide padded input (input 3x4x4)
            4 |     conv(8, 7x7)
              |     ^~~~~~~~~~~~
        """,
    ),
    "add mismatch inside a block names both inputs, both lines and the call site": (
        """
        block mix(c) {
            a: conv(c, 3x3, pad = 1)
            b: conv(c, 3x3)
            from a, b -> add
        }
        network n {
            input 3x16x16
            mix(8)
        }
        """,
        """
        model.cnn:4:18: error: add 'mix1/add1': 'mix1/a' is 8x16x16 but 'mix1/b' is 8x14x14
            4 |     from a, b -> add
              |                  ^~~
        model.cnn:2:8: note: 'mix1/a' (8x16x16) comes from here
            2 |     a: conv(c, 3x3, pad = 1)
              |        ^~~~~~~~~~~~~~~~~~~~~
        model.cnn:3:8: note: 'mix1/b' (8x14x14) comes from here
            3 |     b: conv(c, 3x3)
              |        ^~~~~~~~~~~~
        model.cnn:8:5: note: in block 'mix' used here
            8 |     mix(8)
              |     ^~~~~~
        """,
    ),
    "residual with a shortcut that does not fit": (
        """
        block down(c) {
            residual { conv(c, 3x3, stride = 2, pad = 1) }
        }
        network n {
            input 8x16x16
            down(16)
        }
        """,
        """
        model.cnn:2:5: error: residual 'down1/add1': the body gives 16x8x8 but the identity shortcut gives 8x16x16; write 'shortcut auto' to project the shortcut
            2 |     residual { conv(c, 3x3, stride = 2, pad = 1) }
              |     ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
        model.cnn:2:16: note: the body ends here (16x8x8)
            2 |     residual { conv(c, 3x3, stride = 2, pad = 1) }
              |                ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
        model.cnn:6:5: note: in block 'down' used here
            6 |     down(16)
              |     ^~~~~~~~
        """,
    ),
    "concat of branches with different sizes": (
        """
        network n {
            input 3x16x16
            concat {
                branch { conv(4, 1x1) }
                branch { conv(4, 3x3) }
            }
        }
        """,
        """
        model.cnn:3:5: error: concat 'concat1': 'conv1' is 4x16x16 but 'conv2' is 4x14x14 (other than channels, sizes must agree)
            3 |     concat {
              |     ^~~~~~~~
        model.cnn:4:18: note: 'conv1' (4x16x16) comes from here
            4 |         branch { conv(4, 1x1) }
              |                  ^~~~~~~~~~~~
        model.cnn:5:18: note: 'conv2' (4x14x14) comes from here
            5 |         branch { conv(4, 3x3) }
              |                  ^~~~~~~~~~~~
        """,
    ),
    "a layer on the wrong kind of input": (
        """
        network n {
            input 3x32x32
            fc(10)
            conv(3, 3)
        }
        """,
        """
        model.cnn:4:5: error: conv 'conv1': expects a C x H x W image, but its input is 10; use fc for flat features
            4 |     conv(3, 3)
              |     ^~~~~~~~~~
        """,
    ),
    "missing input declaration": (
        """
        network n {
            conv(3, 3)
        }
        """,
        """
        model.cnn:2:5: error: this layer has no input: start the network with e.g. 'input 3x224x224'
            2 |     conv(3, 3)
              |     ^~~~~~~~~~
        """,
    ),
    "reference to an unknown tensor": (
        """
        network n {
            input 3x32x32
            first: conv(8, 3x3)
            from frist -> relu
        }
        """,
        """
        model.cnn:4:10: error: no tensor named 'frist' here; did you mean 'first'?
            4 |     from frist -> relu
              |          ^~~~~
        """,
    ),
    "a block that uses itself": (
        """
        block loop(c) { loop(c) }
        network n {
            input 3x32x32
            loop(3)
        }
        """,
        """
        model.cnn:1:17: error: block 'loop' uses itself (through loop)
            1 | block loop(c) { loop(c) }
              |                 ^~~~~~~
        model.cnn:4:5: note: in block 'loop' used here
            4 |     loop(3)
              |     ^~~~~~~
        """,
    ),
    "import of a missing file": (
        """
        import "nowhere.cnn"
        network n {
            input 3x32x32
        }
        """,
        """
        model.cnn:1:1: error: cannot import 'nowhere.cnn': no such file next to this one or in the zoo
            1 | import "nowhere.cnn"
              | ^~~~~~~~~~~~~~~~~~~~
        """,
    ),
    "every independent error, in file order, and none that follows from another": (
        """
        block stem(c) {
            conv(c, 3x3, pad = 1) -> rleu
        }
        network n {
            input 3x32x32
            a: stem(8)
            b: conv(8, 3x3, strid = 1)
            from a -> fc(10) -> c: relu
            from input -> conv(4, 64x64)
            from input -> maxpool(2x2) -> fc(1, 2)
            from nothing -> relu
            output b, c
        }
        """,
        """
        model.cnn:2:30: error: unknown layer or block 'rleu'; did you mean 'relu'?
            2 |     conv(c, 3x3, pad = 1) -> rleu
              |                              ^~~~
        model.cnn:6:8: note: in block 'stem' used here
            6 |     a: stem(8)
              |        ^~~~~~~
        model.cnn:7:21: error: conv has no argument 'strid'; did you mean 'stride'?
            7 |     b: conv(8, 3x3, strid = 1)
              |                     ^~~~~~~~~
        model.cnn:9:19: error: conv 'conv1': output height would be (32 - 64 + 2*0)/1 + 1 = -31: the 64-wide window does not fit the 32-wide padded input (input 3x32x32)
            9 |     from input -> conv(4, 64x64)
              |                   ^~~~~~~~~~~~~~
        model.cnn:10:41: error: fc takes 1 positional argument(s) (units), got 2
           10 |     from input -> maxpool(2x2) -> fc(1, 2)
              |                                         ^
        model.cnn:11:10: error: no tensor named 'nothing' here; label a layer with 'name: layer' to refer to it
           11 |     from nothing -> relu
              |          ^~~~~~~
        """,
    ),
    "an error inside a zoo file names it zoo:NAME": (
        """
        from "resnet_blocks.cnn" import basic
        network n {
            input 3x8x8
            basic(0)
        }
        """,
        """
        zoo:resnet_blocks.cnn:9:14: error: argument 'filters' of conv: expected a positive whole number, got 0
            9 |         conv(c, 3x3, stride = stride, pad = 1, bias = false) -> batchnorm -> relu
              |              ^
        model.cnn:4:5: note: in block 'basic' used here
            4 |     basic(0)
              |     ^~~~~~~~
        zoo:resnet_blocks.cnn:10:14: error: argument 'filters' of conv: expected a positive whole number, got 0
           10 |         conv(c, 3x3, pad = 1, bias = false) -> batchnorm
              |              ^
        model.cnn:4:5: note: in block 'basic' used here
            4 |     basic(0)
              |     ^~~~~~~~
        """,
    ),
    "every unknown name in a file of blocks": (
        """
        block a(c) { conv(c, 3x3) -> rleu }
        block b(c) { conv(c, 1x1) -> batchnrom }
        """,
        """
        model.cnn:1:30: error: unknown layer or block 'rleu'; did you mean 'relu'?
            1 | block a(c) { conv(c, 3x3) -> rleu }
              |                              ^~~~
        model.cnn:2:30: error: unknown layer or block 'batchnrom'; did you mean 'batchnorm'?
            2 | block b(c) { conv(c, 1x1) -> batchnrom }
              |                              ^~~~~~~~~
        """,
    ),
}


def _dedent(text: str) -> str:
    return textwrap.dedent(text).strip("\n")


WARNINGS = {
    "a label names the first layer of its chain: the rest is unused, and 'from' reads the first layer": (
        """
        network n {
            input 3x16x16
            mid: conv(8, 3x3, pad = 1) -> relu
            from mid -> globalavgpool -> out: fc(10)
            output out
        }
        """,
        """
        model.cnn:3:35: warning: 'relu1' (relu) is computed but never used and is not an output, so it is dropped
            3 |     mid: conv(8, 3x3, pad = 1) -> relu
              |                                   ^~~~
        model.cnn:3:10: note: 'mid' names the first layer of this chain, not its end; to name the end, put the label on the last layer
            3 |     mid: conv(8, 3x3, pad = 1) -> relu
              |          ^~~~~~~~~~~~~~~~~~~~~
        model.cnn:4:17: warning: 'mid' names the conv 3x3, 8 that starts its chain, not the chain's end ('relu1'); to read the end, put the label on the last layer (to read the conv, end the chain after it)
            4 |     from mid -> globalavgpool -> out: fc(10)
              |                 ^~~~~~~~~~~~~
        model.cnn:3:10: note: 'mid' labels this layer
            3 |     mid: conv(8, 3x3, pad = 1) -> relu
              |          ^~~~~~~~~~~~~~~~~~~~~
        """,
    ),
    "an output named by the label at the start of a chain": (
        """
        network n {
            input 3x16x16
            a: conv(8, 3x3) -> relu
            b: conv(4, 3x3)
            output a, b
        }
        """,
        """
        model.cnn:3:8: warning: the output 'a' is the conv 3x3, 8 that starts its chain, not the chain's end ('relu1'); to output the end, put the label on the last layer
            3 |     a: conv(8, 3x3) -> relu
              |        ^~~~~~~~~~~~
        """,
    ),
}


@pytest.mark.parametrize("case", list(WARNINGS))
def test_golden_warning(case, tmp_path, monkeypatch, capsys):
    source, expected = WARNINGS[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.cnn").write_text(_dedent(source) + "\n")
    assert main(["check", "model.cnn"]) == 0  # warnings stop nothing
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.rstrip("\n") == _dedent(expected)


def test_the_documented_aux_head_example_has_no_warning(tmp_path, monkeypatch, capsys):
    text = (Path(__file__).resolve().parents[2] / "docs" / "language.md").read_text()
    example = text[text.index("network with_aux_head"):].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "aux.cnn").write_text(example)
    assert main(["check", "aux.cnn"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("case", list(CASES))
def test_golden_diagnostic(case, tmp_path, monkeypatch, capsys):
    source, expected = CASES[case]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.cnn").write_text(_dedent(source) + "\n")
    assert main(["check", "model.cnn"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.rstrip("\n") == _dedent(expected)
