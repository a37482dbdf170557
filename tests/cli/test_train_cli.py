"""`cnnlang train`, `eval` and `plot` end to end, Ctrl-C included."""

from __future__ import annotations

import json
import shutil
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import MODEL, write_digits

from cnnlang.cli import main

DATA = Path(os.environ.get("CNNLANG_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data"))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli")
    model = root / "tiny.cnn"
    model.write_text(MODEL)
    return model, write_digits(root / "digits" if (root / "digits").mkdir() is None else root)


def train(model, data, out, *extra) -> int:
    return main(["train", str(model), "--data", str(data), "--out", str(out), "--epochs", "2", "--batch", "32",
                 "--seed", "1", *extra])


def test_train_eval_plot(tmp_path, setup, capsys):
    model, data = setup
    out = tmp_path / "run"
    assert train(model, data, out) == 0
    text = capsys.readouterr().out
    assert "epoch 2/2: train loss" in text and "validation loss" in text and "img/s" in text
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"epoch"' in line]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [1, 2]

    assert main(["eval", str(model), "--weights", str(out / "best.safetensors"), "--data", str(data)]) == 0
    text = capsys.readouterr().out
    accuracy = float(text.split("accuracy ")[1].split("%")[0])
    assert accuracy > 90  # four classes: chance is 25%
    assert "128 examples" in text and "top-5 100.00%" in text
    assert text.index("accuracy ") < text.index("top-5 ")  # the headline figure first
    assert "[" in text  # the confusion matrix marks its diagonal

    # A checkpoint is a weight file too.
    assert main(["eval", str(model), "--weights", str(out / "checkpoint.safetensors"), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(accuracy / 100, abs=1e-4)
    assert sum(map(sum, result["confusion"]["matrix"])) == 128

    # `run` on an image with the trained weights scales it as training did, and gets it right.
    from PIL import Image

    from synthetic import synthetic_digits

    images, labels = synthetic_digits(8, seed=5)
    for image, label in zip(images, labels):
        Image.fromarray(image).save(tmp_path / "digit.png")
        assert main(["run", str(model), "--weights", str(out / "best.safetensors"), "--input", str(tmp_path / "digit.png"),
                     "--top", "1"]) == 0
        text = capsys.readouterr().out
        assert "normalised as in training" in text
        assert f"top-1 class: probability  {label}:" in text

    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--schedule", "sometimes"], "schedule"),
        (["--lr", "-1"], "--lr must be positive"),
        (["--optimizer", "adam", "--nesterov"], "esterov"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, setup, capsys, extra, message):
    model, data = setup
    assert train(model, data, tmp_path / "run", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlang: error:") and message in err and "Traceback" not in err


def test_bad_data_is_a_clear_error(tmp_path, setup, capsys):
    model, _ = setup
    (tmp_path / "empty").mkdir()
    assert train(model, tmp_path / "empty", tmp_path / "run") == 2
    assert "Traceback" not in capsys.readouterr().err
    assert main(["train", str(model), "--data", "imagenet-21k", "--out", str(tmp_path / "r2")]) == 2
    assert "mnist" in capsys.readouterr().err  # the known names are listed


def test_ctrl_c_saves_and_resume_finishes(tmp_path, setup):
    model, data = setup
    out = tmp_path / "run"
    command = [sys.executable, "-m", "cnnlang", "train", str(model), "--data", str(data), "--out", str(out),
               "--epochs", "4", "--batch", "1", "--log-every", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted: saved" in err and "--resume" in err
    assert (out / "checkpoint.safetensors").is_file()

    done = subprocess.run([sys.executable, "-m", "cnnlang", "train", "--resume", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "resuming at epoch" in done.stdout and "epoch 4/4" in done.stdout


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"MNIST not found in {DATA} (set CNNLANG_DATA)")
def test_lenet5_learns_real_mnist(tmp_path, capsys):
    out = tmp_path / "lenet"
    assert main(["train", "lenet5", "--data", "mnist", "--data-dir", str(DATA), "--no-download", "--out", str(out),
                 "--epochs", "1", "--limit", "3000", "--val-split", "500"]) == 0
    epoch = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert epoch["kind"] == "epoch" and epoch["validation_accuracy"] > 0.8  # chance: 0.1


def test_resume_elsewhere_uses_absolute_paths_honours_no_download_and_extends(tmp_path, monkeypatch, capsys):
    """A run started with relative paths resumes from another folder, --no-download holds on
    resume, and --epochs extends a finished run (its schedule continued, or refused at lr 0)."""
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    write_digits(tmp_path / "data" / "mnist")  # four classes in MNIST's files: the model needs fc(10)
    (tmp_path / "tiny.cnn").write_text(MODEL.replace("fc(4)", "fc(10)"))
    monkeypatch.setenv("CNNLANG_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CNNLANG_DATA_MIRROR", (tmp_path / "no-mirror").as_uri())  # a download fails at once
    monkeypatch.delenv("CNNLANG_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    common = ["--data", "mnist", "--data-dir", "data", "--epochs", "1", "--batch", "64", "--val-split", "0"]
    assert main(["train", "tiny.cnn", *common, "--out", "constant", "--schedule", "constant"]) == 0
    assert main(["train", "tiny.cnn", *common, "--out", "cosine"]) == 0
    config = json.loads((tmp_path / "constant" / "config.json").read_text())
    assert config["model"] == str(tmp_path / "tiny.cnn") and config["data_dir"] == str(tmp_path / "data")
    assert "batch 64, 1 epoch\n" in capsys.readouterr().out  # not "1 epochs"

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["train", "--resume", "--out", "../constant", "--no-download"]) == 0
    assert "has trained all its 1 epoch; nothing to do" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", "../constant", "--epochs", "2", "--no-download"]) == 0
    out, err = capsys.readouterr()
    assert "the run now ends after epoch 2 (it was 1); the learning rate follows the schedule as it was laid out (constant" in err
    assert "resuming at epoch 2" in out
    epochs = [json.loads(line) for line in (tmp_path / "constant" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["kind"] == "epoch"] == [1, 2]

    assert main(["train", "--resume", "--out", "../cosine", "--epochs", "2"]) == 2
    assert "ends at lr 0 after epoch 1, so more epochs would not change the weights" in capsys.readouterr().err

    shutil.rmtree(tmp_path / "data")
    assert main(["train", "--resume", "--out", "../constant", "--epochs", "3", "--no-download"]) == 2
    assert "downloading is off" in capsys.readouterr().err


def test_plot_of_a_one_epoch_run_spans_the_epoch_with_per_step_accuracy():
    from cnnlang.cli.plot import curves

    steps = [{"kind": "step", "epoch": 1, "step": i, "batch": i, "batches": 4, "loss": 2.0 / i,
              "train_accuracy": 0.2 * i} for i in range(1, 5)]
    epochs = [{"kind": "epoch", "epoch": 1, "step": 4, "train_loss": 1.0, "train_accuracy": 0.5,
               "validation_loss": 0.9, "validation_accuracy": 0.6}]
    loss_axes, accuracy_axes = curves(steps, epochs, "run").axes
    per_step = next(line for line in accuracy_axes.get_lines() if line.get_label() == "train (running, per step)")
    assert list(per_step.get_ydata()) == pytest.approx([20, 40, 60, 80])
    assert accuracy_axes.get_xlim() == (0, 1) and loss_axes.get_xlim() == (0, 1)
    assert accuracy_axes.get_ylim() == (15, 100.5)


def test_eval_of_a_model_with_several_outputs_says_which_it_evaluates(tmp_path, setup, capsys):
    import cnnlang

    _, data = setup
    source = ("network two { input 1x12x12\n flatten -> cls: fc(4)\n from input -> flatten -> aux: fc(2)\n"
              " output cls, aux }")
    (tmp_path / "two.cnn").write_text(source)
    cnnlang.load(source).build().save(tmp_path / "two.safetensors")
    assert main(["eval", str(tmp_path / "two.cnn"), "--weights", str(tmp_path / "two.safetensors"), "--data", str(data)]) == 0
    assert "output  'cls' (the first of the outputs cls, aux) is the one evaluated\n" in capsys.readouterr().out
