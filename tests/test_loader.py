"""Imports are .cnn text files: other suffixes, special files, folders, names too long for the
file system and non-UTF-8 bytes are refused with a located error that quotes nothing of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cnnlang
from cnnlang.cli import main

NETWORK = "network n {\n input 3x8x8\n relu\n}\n"


def check(tmp_path: Path, text: str, capsys) -> tuple[int, str]:
    path = tmp_path / "model.cnn"
    path.write_text(text, encoding="utf-8")
    status = main(["check", str(path)])
    return status, capsys.readouterr().err


@pytest.mark.parametrize("target", ["/proc/self/environ", "/bin/sh", "/etc/hostname"])
def test_an_import_of_a_file_that_is_not_cnn_reads_nothing(tmp_path, capsys, target):
    status, err = check(tmp_path, f'import "{target}"\n' + NETWORK, capsys)
    assert status == 1
    assert f"model.cnn:1:1: error: cannot import '{target}': only .cnn files can be imported" in err
    assert "PATH=" not in err and "HOME=" not in err


def test_an_import_through_a_link_to_another_file_is_refused(tmp_path, capsys):
    (tmp_path / "secrets.cnn").symlink_to("/proc/self/environ")
    status, err = check(tmp_path, 'import "secrets.cnn"\n' + NETWORK, capsys)
    assert status == 1 and "links to 'environ', which is not a .cnn file" in err


def test_an_import_name_too_long_for_the_file_system(tmp_path, capsys):
    status, err = check(tmp_path, f'import "{"a" * 300}.cnn"\n' + NETWORK, capsys)
    assert status == 1
    assert "model.cnn:1:1: error: cannot import" in err and "internal error" not in err


def test_an_import_of_a_special_file_or_folder(tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.cnn")  # reading it would block forever
    (tmp_path / "folder.cnn").mkdir()
    for name in ("pipe.cnn", "folder.cnn"):
        status, err = check(tmp_path, f'import "{name}"\n' + NETWORK, capsys)
        assert status == 1 and f"model.cnn:1:1: error: cannot import '{name}'" in err


def test_a_model_that_is_a_special_file_is_a_clean_error(capsys):
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc")
    status = main(["check", "/proc/self/mem"])
    err = capsys.readouterr().err
    assert status in (1, 2) and "internal error" not in err and "/proc/self/mem" in err


def test_a_non_utf8_byte_is_reported_at_its_line_and_column(tmp_path, capsys):
    (tmp_path / "blocks.cnn").write_bytes(b"block b() {\n  relu # caf\xe9\n}\n")
    status, err = check(tmp_path, 'import "blocks.cnn"\n' + NETWORK, capsys)
    assert status == 1
    assert err.startswith(f"{tmp_path / 'blocks.cnn'}:2:13: error: byte 0xe9 is not UTF-8 text")
    assert "relu" not in err  # nothing of a file that is not text is quoted


def test_a_binary_posing_as_cnn_is_located_and_not_quoted(tmp_path, capsys):
    (tmp_path / "tool.cnn").write_bytes(Path("/bin/sh").read_bytes()[:4096] if Path("/bin/sh").exists() else b"\x7fELF\xff")
    status, err = check(tmp_path, 'import "tool.cnn"\n' + NETWORK, capsys)
    assert status == 1
    first = err.splitlines()[0]
    assert first.startswith(f"{tmp_path / 'tool.cnn'}:1:") and "is not UTF-8 text" in first
    assert len(err.splitlines()) == 1


def test_a_control_character_stays_on_one_diagnostic_line(tmp_path, capsys):
    status, err = check(tmp_path, "network n {\n input 3x8x8\n relu \r relu\n}\n", capsys)
    assert status == 1
    assert "error: unexpected character '\\r'" in err and "\r" not in err


def test_the_zoo_still_imports():
    assert cnnlang.load("resnet18").name == "resnet18"
