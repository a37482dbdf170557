"""The README's `cnnlang summary` transcripts are what the command prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cnnlang.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"


def transcripts() -> list[tuple[str, str]]:
    """(command, output) for every `$ cnnlang summary ...` in the README's console blocks."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), re.S):
        for command, output in re.findall(r"^\$ (cnnlang summary [^\n]*)\n(.*?)(?=^\$ |\Z)", block, re.S | re.M):
            found.append((command, output))
    return found


def test_the_readme_has_summary_transcripts():
    assert len(transcripts()) >= 2


@pytest.mark.parametrize("command, expected", transcripts(), ids=[c for c, _ in transcripts()])
def test_readme_summary_transcript_is_current(command, expected, tmp_path, monkeypatch, capsys):
    text = README.read_text()
    model = re.search(r"Write a model \(`tiny_resnet.cnn`\):\n\n```\n(.*?)```", text, re.S).group(1)
    (tmp_path / "tiny_resnet.cnn").write_text(model)
    monkeypatch.chdir(tmp_path)
    assert main(command.split()[1:]) == 0
    printed = [line.rstrip() for line in capsys.readouterr().out.splitlines()]  # rich pads the title
    assert printed == expected.splitlines()
