"""docs/lecture.md runs: every ``$ cnnlang ...`` line of its console blocks is run, in order, in one
scratch folder, and what it prints must be what the page shows.

Only timings are normalised (a number followed by s, ms, img/s or images/s), and trailing spaces.
A block preceded by ``<!-- test: replace "A" with "B" ... -->`` is too slow to repeat in CI (LeNet-5's
12 epochs of MNIST): its commands run with A replaced by B, must succeed, and every line they print
must, with its digits masked, be a line of the page's block; the page's numbers come from the full
run. Images the page shows from ``lecture/NAME.png`` must match the NAME.png a command wrote.
Without Graphviz's ``dot``, ``cnnlang render`` to an image is left out (as in tests/render).

CNNLANG_UPDATE_LECTURE=1 rewrites the page's outputs (and its images) from this run instead: read the
diff before committing it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "lecture.md"
IMAGES = REPO / "docs" / "lecture"
UPDATE = bool(os.environ.get("CNNLANG_UPDATE_LECTURE"))

BLOCK = re.compile(r"(?:<!-- test: (?P<note>.*?) -->\n)?```console\n(?P<body>.*?)```", re.S)
REPLACE = re.compile(r'replace "(?P<old>[^"]+)" with "(?P<new>[^"]+)"')
TIMING = re.compile(r"\d[\d,]*(?:\.\d+)? ?(?:ms|s|img/s|images/s)(?=[\s,;)]|$)")


@dataclass
class Step:
    command: str
    expected: list[str]
    start: int  # where the output sits in the page text, for the update mode
    end: int


@dataclass
class Block:
    steps: list[Step] = field(default_factory=list)
    replace: tuple[str, str] | None = None


def parse(text: str) -> list[Block]:
    blocks = []
    for match in BLOCK.finditer(text):
        block = Block()
        if match["note"]:
            found = REPLACE.search(match["note"])
            assert found, f"a test note must say what it replaces: {match['note']}"
            block.replace = (found["old"], found["new"])
        offset = match.start("body")
        lines = match["body"].splitlines(keepends=True)
        position = offset
        for line in lines:
            if line.startswith("$ "):
                if block.steps:
                    block.steps[-1].end = position
                block.steps.append(Step(line[2:].strip(), [], position + len(line), 0))
            elif block.steps:
                block.steps[-1].expected.append(line.rstrip("\n"))
            position += len(line)
        if block.steps:
            block.steps[-1].end = position
        blocks.append(block)
    return blocks


def normalise(lines: list[str]) -> list[str]:
    return [TIMING.sub("<time>", line.rstrip()) for line in lines]


def masked(line: str) -> str:
    """The line with every number (60,000, 0.025, 1.4e-05) as # and runs of spaces as one: what is
    left is its wording."""
    return " ".join(re.sub(r"\d[\d,.]*(?:e[-+]?\d+)?", "#", TIMING.sub("<time>", line)).split())


def run(command: str, folder: Path) -> subprocess.CompletedProcess:
    words = shlex.split(command)
    assert words[0] == "cnnlang", f"the page's commands start with cnnlang: {command}"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["CNNLANG_DATA"] = str(data_root())
    return subprocess.run([sys.executable, "-m", "cnnlang", *words[1:]], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)


def data_root() -> Path:
    return Path(os.environ.get("CNNLANG_DATA") or REPO.parent / "shared" / "data")


def needs_mnist(block: Block) -> bool:
    return any("--data mnist" in step.command for step in block.steps)


def needs_dot(command: str) -> bool:
    return command.startswith("cnnlang render") and not command.endswith(".dot")


def run_blocks(blocks: list[Block], folder: Path) -> list[tuple[int, int, str]]:
    """Run the blocks' commands in ``folder`` and check what they print; in the update mode,
    return the page's edits instead of comparing exact outputs."""
    edits = []
    for block in blocks:
        for step in block.steps:
            command = step.command.replace(*block.replace) if block.replace else step.command
            if needs_dot(command) and shutil.which("dot") is None:
                continue  # as tests/render: without Graphviz, only drawing is left out
            result = run(command, folder)
            assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
            printed = (result.stdout + result.stderr).splitlines()
            if block.replace:
                wordings = {masked(line) for line in step.expected}
                strays = [line for line in printed if masked(line) not in wordings]
                assert not strays, f"$ {command} printed lines the page does not show:\n" + "\n".join(strays)
            elif UPDATE:
                edits.append((step.start, step.end, "".join(line.rstrip() + "\n" for line in printed)))
            else:
                assert normalise(printed) == normalise(step.expected), f"$ {command}"
    return edits


def test_every_command_of_the_lecture_prints_what_the_page_shows(tmp_path):
    text = PAGE.read_text(encoding="utf-8")
    blocks = [block for block in parse(text) if not needs_mnist(block)]
    assert sum(len(block.steps) for block in blocks) >= 8
    edits = run_blocks(blocks, tmp_path)
    for name in re.findall(r"\]\(lecture/([\w.-]+\.png)\)", text):
        made = tmp_path / name
        if not made.is_file():
            continue  # drawn from the full training run (LeNet-5's curves)
        if UPDATE:
            shutil.copyfile(made, IMAGES / name)
        else:
            assert_same_image(made, IMAGES / name)
    if UPDATE:
        for start, end, output in sorted(edits, reverse=True):
            text = text[:start] + output + text[end:]
        PAGE.write_text(text, encoding="utf-8")


def test_the_lecture_trains_lenet5_as_the_page_shows(tmp_path):
    if not (data_root() / "mnist").is_dir():
        pytest.skip(f"LeNet-5's section needs MNIST in {data_root()}/mnist (set CNNLANG_DATA to a folder with mnist/)")
    blocks = [block for block in parse(PAGE.read_text(encoding="utf-8")) if needs_mnist(block)]
    assert blocks and all(block.replace for block in blocks), "training 12 epochs is too slow to repeat as written"
    assert "--epochs 12" in blocks[0].steps[0].command
    run_blocks(blocks, tmp_path)


def assert_same_image(made: Path, page: Path) -> None:
    from PIL import Image

    with Image.open(made) as a, Image.open(page) as b:
        assert a.size == b.size, f"{made.name}: {a.size} written, {b.size} on the page"
        difference = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
    # float32 sums in another order may move a pixel across a rounding boundary, never further
    assert difference.max() <= 1, f"{made.name} differs from docs/lecture/{made.name} by up to {difference.max()}"


def test_the_sample_image_is_what_its_script_draws(tmp_path):
    script = IMAGES / "make_sample_image.py"
    subprocess.run([sys.executable, str(script), str(tmp_path / "sample.png")], check=True, capture_output=True)
    from PIL import Image

    with Image.open(tmp_path / "sample.png") as drawn, Image.open(REPO / "zoo" / "lecture" / "sample.png") as shipped:
        assert np.array_equal(np.asarray(drawn), np.asarray(shipped))


def test_parse_finds_commands_outputs_and_notes():
    text = ('<!-- test: replace "--epochs 12" with "--epochs 1" (slow) -->\n```console\n'
            "$ cnnlang train x --epochs 12\nepoch 1/12\n$ cnnlang eval x\nacc 99%\n```\n"
            "```console\n$ cnnlang check y\n```\n")
    first, second = parse(text)
    assert first.replace == ("--epochs 12", "--epochs 1")
    assert [s.command for s in first.steps] == ["cnnlang train x --epochs 12", "cnnlang eval x"]
    assert [s.expected for s in first.steps] == [["epoch 1/12"], ["acc 99%"]]
    assert text[first.steps[1].start:first.steps[1].end] == "acc 99%\n"
    assert second.replace is None and second.steps[0].expected == []


def test_only_timings_are_normalised():
    assert normalise(["start   1.25 s to load; first pass 4.8 ms  "]) == ["start   <time> to load; first pass <time>"]
    assert normalise(["1,342 img/s", "22957.9 images/s"]) == ["<time>", "<time>"]
    assert normalise(["output  1 x 1x6", "params: 304,128 (304.13 k)", "1.811 1.967"]) == \
        ["output  1 x 1x6", "params: 304,128 (304.13 k)", "1.811 1.967"]
    assert masked("60,000 examples, lr 1.4e-05 | 9.7 s") == masked("500 examples, lr 0.025 | 12 s") == "# examples, lr # | <time>"
    assert masked("   7   975    0") == masked("   7     3   12") == "# # #"
