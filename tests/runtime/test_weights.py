"""Weight files: round trips in both formats, no pickle, atomic and never overwritten unasked."""

from __future__ import annotations

import numpy as np
import pytest

import cnnlang
from cnnlang.runtime.weights import WeightsError, load_weights, save_weights


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip_restores_outputs(tmp_path, suffix):
    model = cnnlang.load("lenet5")
    a = model.build(seed=1)
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32))
    path = tmp_path / f"w{suffix}"
    a.save(path)
    b = model.build(seed=2)
    assert not np.allclose(a.forward(x), b.forward(x))
    b.load(path)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    _, metadata = load_weights(path)
    assert metadata["model"] == "lenet5" and len(metadata["source_sha256"]) == 64


def test_existing_file_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"precious")
    net = cnnlang.load("lenet5").build()
    with pytest.raises(FileExistsError):
        net.save(path)
    assert path.read_bytes() == b"precious"
    net.save(path, overwrite=True)
    assert load_weights(path)[0]["c1.weight"].shape == (6, 1, 5, 5)
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left behind


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="not a readable .npz"):
        load_weights(path)


@pytest.mark.parametrize("content", [b"", b"garbage that is no safetensors header"])
def test_damaged_files_give_clear_errors(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match="bad.safetensors: not a readable .safetensors"):
        load_weights(path)


def test_mismatched_weights_name_every_problem(tmp_path):
    path = tmp_path / "other.npz"
    save_weights(path, {"c1.weight": np.zeros((6, 1, 3, 3)), "extra": np.zeros(2)}, {})
    net = cnnlang.load("lenet5").build()
    with pytest.raises(WeightsError) as info:
        net.load(path)
    text = str(info.value)
    assert "missing" in text and "c1.bias" in text
    assert "unexpected 1: extra" in text
    assert "c1.weight is 6x1x3x3 in the file, 6x1x5x5 in the model" in text


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="must end in .safetensors or .npz"):
        load_weights(tmp_path / "w.pt")
    with pytest.raises(WeightsError, match="no such weight file"):
        load_weights(tmp_path / "w.npz")


# ---- hostile weight files (issue 17) --------------------------------------------------------


def _lenet_state(dtype):
    import cnnlang

    network = cnnlang.load("lenet5").build(dtype=dtype)
    return network, {k: v.copy() for k, v in network.state().items()}


@pytest.mark.parametrize("bad", [np.int64, np.uint8, np.bool_])
def test_a_non_float_weight_is_refused(tmp_path, bad):
    from safetensors.numpy import save_file

    network, state = _lenet_state("float32")
    name = next(iter(state))
    state[name] = state[name].astype(bad)
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(WeightsError, match=f"{name} is {np.dtype(bad)} in the file; parameters and buffers must be floats"):
        network.load(tmp_path / "w.safetensors")


def test_castable_floats_are_converted_with_a_note(tmp_path):
    from safetensors.numpy import save_file

    network, state = _lenet_state("float32")
    save_file({k: v.astype(np.float16) for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    network.load(tmp_path / "w.safetensors")
    assert network.load_notes == [f"{tmp_path / 'w.safetensors'}: {len(state)} array(s) of float16 converted to float32"]
    name = next(iter(state))
    np.testing.assert_array_equal(network.state()[name], state[name].astype(np.float16).astype(np.float32))


def test_an_npz_member_that_is_a_raw_pickle_is_refused(tmp_path):
    import pickle
    import zipfile

    network, state = _lenet_state("float32")
    path = tmp_path / "w.npz"
    np.savez(path, **state)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("payload", pickle.dumps({"a": 1}))
    with pytest.raises(WeightsError, match="member 'payload' is not a .npy array"):
        network.load(path)


def test_run_prints_the_conversion_note(tmp_path, capsys):
    from safetensors.numpy import save_file

    from cnnlang.cli import main

    _, state = _lenet_state("float32")
    save_file({k: v.astype(np.float64) for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    assert main(["run", "lenet5", "--weights", str(tmp_path / "w.safetensors"), "--repeat", "0"]) == 0
    assert "note: " in capsys.readouterr().err
