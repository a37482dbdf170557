"""The run and bench commands: outputs, inputs from files, clear errors for wrong inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from cnnlang.cli import main

TINY = "network tiny { input 1x8x8\n conv(4, 3x3) -> relu\n maxpool(2x2)\n fc(3) }"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.cnn").write_text(TINY)
    return tmp_path


def test_run_random_input_shows_top_classes_and_time(workdir, capsys):
    assert main(["run", "tiny.cnn", "--batch", "2", "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "input   2 x 1x8x8 (random normal, seed 0)" in out
    assert "output  2 x 3 ('fc1')" in out
    assert out.count("top-2 class") == 2
    assert "ms per image" in out


def test_run_on_an_npy_file_agrees_with_the_api(workdir, capsys):
    import cnnlang

    x = np.random.default_rng(1).standard_normal((1, 8, 8)).astype(np.float32)
    np.save("x.npy", x)
    net = cnnlang.load("tiny.cnn").build(seed=0)
    logits = net.forward(x)[0].astype(np.float64)
    best = int(np.argmax(logits))
    probability = np.exp(logits[best]) / np.exp(logits).sum()
    assert main(["run", "tiny.cnn", "--input", "x.npy", "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert f"top-1 class: probability  {best}: {probability:.3f}" in out


def test_run_on_an_image_resizes_it(workdir, capsys):
    from PIL import Image

    Image.fromarray(np.arange(300, dtype=np.uint8).reshape(15, 20)).save("digit.png")
    assert main(["run", "tiny.cnn", "--input", "digit.png"]) == 0
    assert "input   1 x 1x8x8 (digit.png)" in capsys.readouterr().out


def test_run_with_saved_weights(workdir, capsys):
    import cnnlang

    cnnlang.load("tiny.cnn").build(seed=5).save("w.safetensors")
    assert main(["run", "tiny.cnn", "--weights", "w.safetensors"]) == 0
    assert "weights w.safetensors" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "wrong.npy"], "wrong.npy: the array is 3x8x8, but the model expects 1x8x8 (one example) or N x 1x8x8"),
        (["--input", "missing.npy"], "missing.npy: no such file (expected a .npy array of 1x8x8 or an image)"),
        (["--input", "notes.txt"], "notes.txt: expected a .npy array of 1x8x8 or an image"),
        (["--input", "broken.png"], "broken.png: not a readable image"),
        (["--weights", "none.npz"], "none.npz: no such weight file"),
    ],
)
def test_run_wrong_inputs_are_clear_errors(workdir, capsys, args, message):
    np.save("wrong.npy", np.zeros((3, 8, 8)))
    (workdir / "notes.txt").write_text("hello")
    (workdir / "broken.png").write_bytes(b"not a png")
    assert main(["run", "tiny.cnn", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_run_input_size_override(workdir, capsys):
    assert main(["run", "tiny.cnn", "--input", "1x12x12"]) == 0
    assert "input   1 x 1x12x12" in capsys.readouterr().out


def test_bench_reports_speed_and_per_layer_gflops(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "4", "--train", "--repeat", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["batch"] == 4 and result["inference_s"] > 0 and result["train_step_s"] > 0
    layers = {row["layer"]: row for row in result["layers"]}
    assert layers["conv1"]["macs"] == 4 * 36 * 4 * 9
    assert layers["conv1"]["forward_gflops"] > 0 and layers["conv1"]["backward_s"] > 0
    assert layers["relu1"]["forward_gflops"] is None


def test_bench_table(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "GFLOP/s" in out and "conv1" in out and "total" in out


def test_run_uses_all_passes_by_default_and_can_leave_them_out(workdir, capsys):
    from cnnlang.passes.optimise import PASS_NAMES

    assert main(["run", "tiny.cnn", "--batch", "2"]) == 0
    optimised = capsys.readouterr().out
    assert f"passes  {', '.join(PASS_NAMES)}" in optimised
    assert main(["run", "tiny.cnn", "--batch", "2", "--passes", "none"]) == 0
    plain = capsys.readouterr().out
    assert "passes  none" in plain
    # the same classes and probabilities either way (printed to 3 decimals)
    ranked = [line for line in optimised.splitlines() if "top-3" in line]
    assert ranked and ranked == [line for line in plain.splitlines() if "top-3" in line]
    assert main(["run", "tiny.cnn", "--no-pass", "fuse-activation", "--no-pass", "plan-memory"]) == 0
    assert "passes  inference, dead-code, fold-batchnorm, fuse-add-relu, fuse-residual, fuse-depthwise, eliminate-concat, winograd\n" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "bench"])
def test_an_unknown_pass_is_a_one_line_error(workdir, capsys, command):
    assert main([command, "tiny.cnn", "--passes", "fold-batchnorm,speedup"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown pass 'speedup'" in err and "Traceback" not in err


def test_bench_compares_all_passes_with_none(workdir, capsys):
    from cnnlang.passes.optimise import PASS_NAMES

    assert main(["bench", "tiny.cnn", "--batch", "4", "--repeat", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    optimised = result["optimised"]
    assert optimised["passes"] == list(PASS_NAMES) and result["passes"] == []
    # No passes: one float32 buffer per layer, conv1 and relu1 4x6x6, maxpool1 4x3x3, fc1 3.
    assert result["activation_bytes"] == 4 * (144 + 144 + 36 + 3) * 4
    # All passes: relu1 runs inside conv1; conv1's buffer is dead once maxpool1 has read it, so
    # fc1 reuses it: two slots of 144 and 36 values.
    assert optimised["activation_bytes"] == 4 * (144 + 36) * 4
    assert optimised["inference_s"] > 0 and result["speedup"] == pytest.approx(result["inference_s"] / optimised["inference_s"])
    layers = {row["layer"]: row for row in optimised["layers"]}
    assert "relu1" not in layers and layers["conv1"]["fused"] == ["relu1"]


def test_bench_counts_a_streamed_depthwise_conv_with_the_conv_it_runs_inside(workdir, capsys):
    (workdir / "separable.cnn").write_text(
        "network separable { input 16x6x6\n d: conv(16, 3x3, pad = 1, groups = 16) -> relu\n p: conv(8, 1x1) }\n")
    assert main(["bench", "separable.cnn", "--batch", "2", "--repeat", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    layers = {row["layer"]: row for row in result["optimised"]["layers"]}
    assert "d" not in layers and layers["p"]["fused"] == ["d", "relu1"]
    # the 1x1 conv's row: its time is both convs', and so are its multiply-adds
    assert layers["p"]["macs"] == 2 * 36 * (16 * 9 + 16 * 8)
    assert {row["layer"] for row in result["layers"]} >= {"d", "p"}  # (without passes: as written)


def test_bench_with_a_pass_selection_and_with_none(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1", "--passes", "fuse-activation", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["optimised"]["passes"] == ["fuse-activation"]
    assert result["optimised"]["activation_bytes"] == 2 * (144 + 36 + 3) * 4  # relu1's buffer is gone
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1", "--passes", "none", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "optimised" not in result and "speedup" not in result


def test_bench_table_reports_both_and_the_speedup(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1", "--train"]) == 0
    out = capsys.readouterr().out
    assert "inference all passes" in out and "inference no passes" in out
    assert "speed-up" in out and "MB" in out and "training step" in out


def test_bench_says_which_activations_run_inside_the_pooling_after_them(workdir, capsys):
    (workdir / "pooled.cnn").write_text(
        "network pooled { input 1x8x8\n conv(4, 3x3, pad = 1) -> batchnorm -> relu -> avgpool(2x2)\n"
        " conv(4, 3x3, pad = 1) -> tanh -> avgpool(2x2)\n fc(3) }")
    assert main(["bench", "pooled.cnn", "--batch", "2", "--repeat", "1", "--train", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fused_relus"] == {"relu1": "batchnorm1"} and result["pooled_activations"] == {"tanh1": "avgpool2"}
    assert main(["bench", "pooled.cnn", "--batch", "2", "--repeat", "1", "--train"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("no passes but fuse-training: 1 relu fused into the batchnorm or add before it; 1 activation fused "
            "into the average pooling after it)") in out


def test_bench_says_which_adds_run_inside_the_batchnorm_before_them(workdir, capsys):
    (workdir / "res.cnn").write_text("network res { input 1x8x8\n a: conv(4, 3x3, pad = 1)\n"
                                     " conv(4, 3x3, pad = 1) -> b: batchnorm\n from b, a -> add -> relu\n fc(3) }")
    assert main(["bench", "res.cnn", "--batch", "2", "--repeat", "1", "--train", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["fused_adds"] == {"add1": "b"} and result["fused_relus"] == {"relu1": "b"}
    assert main(["bench", "res.cnn", "--batch", "2", "--repeat", "1", "--train"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("no passes but fuse-training: 1 relu fused into the batchnorm or add before it; 1 add fused into the "
            "batchnorm before it)") in out


def test_bench_says_the_training_step_fuses_relus_into_batchnorm(workdir, capsys):
    # Training on the CPU runs fuse-training (a relu after a batchnorm or add runs inside it):
    # the headline must say so rather than "no passes", and say "no passes" where nothing fused.
    (workdir / "bn.cnn").write_text("network bn { input 1x8x8\n conv(4, 3x3) -> batchnorm -> relu\n fc(3) }")
    assert main(["bench", "bn.cnn", "--batch", "2", "--repeat", "1", "--train", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["fused_relus"] == {"relu1": "batchnorm1"}
    assert main(["bench", "bn.cnn", "--batch", "2", "--repeat", "1", "--train"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "SGD update; no passes but fuse-training: 1 relu fused into the batchnorm or add before it)" in out
    assert "(inference no passes: fuse-training too" in out
    assert "per layer, no passes but fuse-training (" in out
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1", "--train"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "SGD update; no passes)" in out and "fuse-training" not in out


def test_bench_reports_conv_scratch(workdir, capsys):
    assert main(["bench", "tiny.cnn", "--batch", "2", "--repeat", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["workspace_bytes"] > 0 and result["optimised"]["workspace_bytes"] > 0


TWO_OUTPUTS = """
network two {
    input 1x8x8
    edge: conv(1, 3x3, pad = 1, weights = [[0, -1, 0], [-1, 4, -1], [0, -1, 0]])
    seg: conv(2, 1x1)
    from edge -> flatten -> cls: fc(3)
    output seg, cls
}
"""


def test_run_and_summary_show_every_output_and_which_weights_are_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.cnn").write_text(TWO_OUTPUTS)
    assert main(["run", "two.cnn", "--repeat", "0"]) == 0
    out = capsys.readouterr().out
    assert "weights written in the model: edge; random (He/Xavier, seed 0): seg, cls\n" in out
    assert "output  1 x 2x8x8 ('seg')\n  values: mean" in out
    assert "output  1 x 3 ('cls')\n  example 0: top-3 class" in out
    assert main(["summary", "two.cnn"]) == 0
    assert "input 1x8x8 -> outputs seg 2x8x8, cls 3\n" in capsys.readouterr().out
    (tmp_path / "fixed.cnn").write_text("network f { input 1x8x8\n conv(1, 3x3, weights = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]) }")
    assert main(["run", "fixed.cnn", "--repeat", "0"]) == 0
    assert "weights written in the model: conv1; none random\n" in capsys.readouterr().out


def test_bench_training_step_stays_finite_and_reports_overflow_in_words(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dag.cnn").write_text(
        "network dag { input 2x6x6\n a: conv(4, 3x3, pad = 1) -> relu\n b: conv(4, 3x3, pad = 1)\n"
        " from a, b -> add -> flatten -> fc(3) }"
    )
    assert main(["bench", "dag.cnn", "--batch", "2", "--train", "--repeat", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    losses = result["train_losses"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]  # a sane step: the loss falls
    assert result["train_step_s"] > 0

    # Weights written so large that float32 overflows: said in words, and no timing.
    (tmp_path / "huge.cnn").write_text(
        "network huge { input 1x4x4\n conv(1, 1x1, weights = [[1e30]]) -> conv(1, 1x1, weights = [[1e30]])\n"
        " flatten\n fc(2) }"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NumPy overflow warnings either
        assert main(["bench", "huge.cnn", "--batch", "2", "--train", "--repeat", "1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("cnnlang bench: huge: not timed: the forward pass gives non-finite values (layer 'conv2' "
                   "(conv 1x1, 1 at line 2) produced 32 non-finite values) on random input with seed 0\n")


def test_a_training_step_gone_non_finite_is_named_not_timed():
    import cnnlang
    from cnnlang.cli.bench import _nonfinite_training

    net = cnnlang.load("network n { input 3\n fc(2) }").build(dtype="float64")
    net.forward(np.ones((1, 3)))
    assert _nonfinite_training(net, [1.0, 0.5]) is None
    net.params["fc1.weight"][0, 0] = np.inf
    net.forward(np.ones((1, 3)))
    assert _nonfinite_training(net, [1.0, np.inf]) == (
        "the loss became inf at step 2 of 2: layer 'fc1' (fc 2 at line 2) has non-finite parameters: fc1.weight")
