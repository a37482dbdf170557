"""``cnnlang train --device cuda`` and ``eval --device cuda`` end to end on a micro model (the
simulator runs every GPU thread as Python, so the model, images and batches are tiny: one step
per epoch): the run on the device, stopped after an epoch and resumed from its checkpoint,
computes the CPU run's numbers (float64, so a difference is a defect, not rounding) and writes
the same files from the host copies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cnnlang.cli import main
from cnnlang.data import write_idx
from cnnlang.runtime.weights import load_weights

MODEL = """
network micro {
    input 1x4x4
    conv(2, 3x3, pad = 1)
    flatten
    fc(2)
}
"""
TRAIN = ["--epochs", "2", "--batch", "8", "--val-split", "0", "--dtype", "float64", "--lr", "0.2",
         "--optimizer", "adamw", "--schedule", "constant", "--label-smoothing", "0.1", "--log-every", "1",
         "--no-download"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model file and a two-class IDX dataset: class k has a bright half (top or bottom)."""
    folder = tmp_path_factory.mktemp("micro")
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("t10k", 4)):
        labels = rng.integers(0, 2, count).astype(np.uint8)
        images = rng.integers(0, 60, (count, 4, 4)).astype(np.uint8)
        for image, label in zip(images, labels):
            image[2 * label:2 * label + 2] = 220
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    (folder / "micro.cnn").write_text(MODEL)
    return folder / "micro.cnn", folder


def metrics(run) -> list[dict]:
    drop = ("seconds", "images_per_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_numbers(run, reference) -> None:
    for name in ("last.safetensors", "checkpoint.safetensors"):
        arrays, _ = load_weights(run / name)
        expected, _ = load_weights(reference / name)
        assert arrays.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(arrays[key], value, rtol=1e-10, atol=1e-12, err_msg=f"{name}: {key}")
    for got, want in zip(metrics(run), metrics(reference), strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, rel=1e-10) if isinstance(value, float) else value), key


def test_train_resume_and_eval_on_the_device_equal_the_cpu(tmp_path, files, capsys):
    model, data = files
    assert main(["train", str(model), "--data", str(data), "--out", str(tmp_path / "cpu"), *TRAIN]) == 0
    # On the device: one epoch, then resumed from its checkpoint for the second.
    assert main(["train", str(model), "--data", str(data), "--out", str(tmp_path / "cuda"), "--device", "cuda",
                 *TRAIN, "--epochs", "1"]) == 0
    assert main(["train", "--resume", "--out", str(tmp_path / "cuda"), "--epochs", "2", "--device", "cuda"]) == 0
    assert_same_numbers(tmp_path / "cuda", tmp_path / "cpu")
    assert metrics(tmp_path / "cuda")[-1]["test_accuracy"] > 0.5  # it learned (chance is 0.5 at best)

    capsys.readouterr()
    evaluations = []
    for device in ("cpu", "cuda"):
        assert main(["eval", str(model), "--weights", str(tmp_path / "cuda" / "last.safetensors"), "--data", str(data),
                     "--no-download", "--json", "--device", device]) == 0
        evaluations.append(json.loads(capsys.readouterr().out))
    on_cpu, on_cuda = evaluations
    # eval runs in float32, and the two sides sum in different orders: the device sums the loss in
    # float64, the CPU in float32, and the CPU's small convs run the direct kernels (reassociated
    # sums). Float32's epsilon is 1.2e-7; the forward's rounding over tens of terms reaches ~1e-6.
    assert on_cuda["loss"] == pytest.approx(on_cpu["loss"], rel=1e-5)
    assert (on_cuda["accuracy"], on_cuda["top5"], on_cuda["confusion"]) == (on_cpu["accuracy"], on_cpu["top5"], on_cpu["confusion"])


def test_data_parallel_training_on_the_device_is_refused_in_one_line(tmp_path, files, capsys):
    model, data = files
    status = main(["train", str(model), "--data", str(data), "--out", str(tmp_path / "run"), "--device", "cuda",
                   "--ranks", "2", *TRAIN])
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    assert "--ranks" in error and "CPU only" in error
    assert not (tmp_path / "run").exists()
