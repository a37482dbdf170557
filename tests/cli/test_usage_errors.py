"""One usage-error path: every option or file problem a user can cause exits 2 with one line
`cnnlang: error: ...`; memory is estimated before `run` allocates anything."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from cnnlang.cli import main


@pytest.mark.parametrize("argv", [
    ["run", "lenet5", "--batch", "0"],
    ["run", "lenet5", "--top", "0"],
    ["run", "lenet5", "--repeat", "-1"],
    ["bench", "lenet5", "--batch", "0"],
    ["summary", "lenet5", "--depth", "0"],
    ["render", "lenet5", "-o", "x.dot", "--depth", "0"],
    ["render", "lenet5", "-o", "x.unknown"],
    ["check", "no-such-model"],
])
def test_bad_options_exit_2_with_one_line(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlang: error: ") and err.count("\n") == 1


def test_run_refuses_a_model_too_large_for_memory_before_allocating(tmp_path, capsys):
    path = tmp_path / "big.cnn"
    path.write_text("network big {\n input 3x1000000x1000000\n conv(8, 3x3)\n}\n", encoding="utf-8")
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "running 'big' needs about 44.00 TB" in err and "Lower --batch" in err and "internal error" not in err


def test_run_refuses_too_many_parameters_and_says_so(tmp_path, capsys):
    path = tmp_path / "wide.cnn"
    path.write_text("network wide {\n input 1x8x8\n fc(200000) -> fc(200000)\n}\n", encoding="utf-8")
    assert main(["run", str(path)]) == 2
    assert "The parameters alone do not fit" in capsys.readouterr().err


def test_the_memory_estimate_counts_weights_and_activations():
    import cnnlang
    from cnnlang.memory import check_fits, estimate

    model = cnnlang.load("network n {\n input 1x4x4\n conv(2, 3x3)\n}\n")  # 18 weights + 2 biases
    need = estimate(model, batch=3, dtype="float64")
    assert need.weights == 2 * 20 * 8
    assert need.activations == 3 * (2 * 2 * 2 + 16) * 8
    with pytest.raises(Exception, match="only 100 B of memory is available"):
        check_fits(model, 3, "float64", available=100)


def test_run_draws_its_random_input_in_the_run_dtype(monkeypatch, capsys):
    from cnnlang.runtime.network import Network

    seen = []
    forward = Network.forward

    def recording(self, x, *args, **kwargs):
        seen.append(x.dtype)
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(Network, "forward", recording)
    assert main(["run", "lenet5", "--repeat", "0"]) == 0
    assert seen == [np.dtype(np.float32)]


def test_a_full_disk_is_a_usage_error_naming_the_file(tmp_path, capsys, monkeypatch):
    import cnnlang.cli.render as render

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(render, "write_bytes_atomically", full)
    assert main(["render", "lenet5", "-o", str(tmp_path / "l.dot")]) == 2
    err = capsys.readouterr().err
    assert err == f"cnnlang: error: {tmp_path / 'l.dot'}: no space left on device; free some space\n"


def test_render_writes_atomically(tmp_path, monkeypatch):
    import cnnlang.files as files

    target = tmp_path / "l.dot"
    target.write_text("the old drawing", encoding="utf-8")

    def broken(temporary, destination):
        raise OSError(errno.EIO, "Input/output error", destination)

    monkeypatch.setattr(files.os, "replace", broken)
    assert main(["render", "lenet5", "-o", str(target), "--force"]) == 2
    assert target.read_text(encoding="utf-8") == "the old drawing"
    assert [p.name for p in tmp_path.iterdir()] == ["l.dot"]  # no temporary left behind
