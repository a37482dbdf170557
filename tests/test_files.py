"""cnnlang.files: atomic writes leave a whole file with the usual permissions, or nothing."""

import os
import stat

import pytest

from cnnlang.files import remove_temporaries, write_text_atomically


def test_a_written_file_has_the_mode_a_plain_open_gives(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "model.cnn", "network n { input 1x4x4 }\n")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(mask)
    mode = stat.S_IMODE((tmp_path / "model.cnn").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_text("old")

    def broken(temporary):
        open(temporary, "w").write("half")
        raise RuntimeError("disk vanished")

    from cnnlang.files import write_atomically

    with pytest.raises(RuntimeError):
        write_atomically(target, broken)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.safetensors"]
    assert remove_temporaries(tmp_path, ["weights.safetensors"]) == []


def test_weights_written_by_safetensors_get_the_usual_mode_too(tmp_path):
    import numpy as np

    from cnnlang.runtime.weights import save_weights

    mask = os.umask(0o022)
    try:
        save_weights(tmp_path / "w.safetensors", {"fc1.weight": np.ones((2, 3), np.float32)}, {})
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644
