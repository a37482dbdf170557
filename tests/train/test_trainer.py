"""The training loop on a small learnable synthetic dataset: the loss falls, resume equals an
uninterrupted run, checkpoints round-trip, and failures are clear."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import MODEL

from cnnlang.data import DataError
from cnnlang.train.checkpoint import CheckpointError, load_checkpoint
from cnnlang.train.config import TrainConfig
from cnnlang.train.trainer import CHECKPOINT, METRICS, Hooks, Interrupted, Trainer, TrainingError

def config(model_file, dataset_dir, **changes) -> TrainConfig:
    values = dict(model=str(model_file), data=str(dataset_dir), epochs=2, batch_size=32, lr=0.05, log_every=4,
                  val_split=0.25, crop=1, seed=3, dtype="float64")
    values.update(changes)
    return TrainConfig(**values)


def records(folder) -> list[dict]:
    lines = (folder / METRICS).read_text().splitlines()
    # Wall-clock fields differ between any two runs; everything else must match.
    return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "images_per_s")} for line in lines]


def test_loss_falls_and_files_are_written(tmp_path, model_file, dataset_dir):
    trainer = Trainer(config(model_file, dataset_dir, epochs=3), tmp_path / "run")
    last = trainer.run()
    logged = records(tmp_path / "run")
    steps = [r for r in logged if r["kind"] == "step"]
    assert steps[-1]["loss"] < 0.5 * steps[0]["loss"]
    assert last["validation_accuracy"] > 0.9  # chance is 0.25
    for name in ("checkpoint.safetensors", "best.safetensors", "last.safetensors", "config.json"):
        assert (tmp_path / "run" / name).is_file()
    assert [r["epoch"] for r in logged if r["kind"] == "epoch"] == [1, 2, 3]


def test_resume_equals_uninterrupted(tmp_path, model_file, dataset_dir):
    straight = Trainer(config(model_file, dataset_dir), tmp_path / "straight")
    straight.run()

    stop_after = 7  # mid-way through the first epoch (12 batches per epoch)
    hooks = Hooks(stop_requested=lambda: broken.progress.step >= stop_after)
    broken = Trainer(config(model_file, dataset_dir), tmp_path / "broken", hooks=hooks)
    with pytest.raises(Interrupted) as stopped:
        broken.run()
    assert stopped.value.step == stop_after
    resumed = Trainer(config(model_file, dataset_dir), tmp_path / "broken", resume=True)
    assert resumed.progress.step == stop_after
    resumed.run()

    for name, value in straight.network.state().items():
        np.testing.assert_array_equal(resumed.network.state()[name], value, err_msg=name)
    for name, value in straight.optimizer.state_arrays().items():
        np.testing.assert_array_equal(resumed.optimizer.state_arrays()[name], value, err_msg=name)
    assert records(tmp_path / "broken") == records(tmp_path / "straight")


def test_resume_from_epoch_boundary_checkpoint(tmp_path, model_file, dataset_dir):
    straight = Trainer(config(model_file, dataset_dir), tmp_path / "straight")
    straight.run()
    first = Trainer(config(model_file, dataset_dir), tmp_path / "two")
    first.hooks = Hooks(stop_requested=lambda: first.progress.epoch == 1)
    with pytest.raises(Interrupted):
        first.run()
    Trainer(config(model_file, dataset_dir), tmp_path / "two", resume=True).run()
    assert records(tmp_path / "two") == records(tmp_path / "straight")


def test_checkpoint_round_trip(tmp_path, model_file, dataset_dir):
    trainer = Trainer(config(model_file, dataset_dir, epochs=1, optimizer="adamw", lr=1e-3), tmp_path / "run")
    trainer.run()
    checkpoint = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    for name, value in trainer.network.state().items():
        np.testing.assert_array_equal(checkpoint.model[name], value)
    assert set(checkpoint.optimizer) == set(trainer.optimizer.state_arrays())
    assert checkpoint.state["progress"]["epoch"] == 1
    assert checkpoint.state["optimizer"]["kind"] == "adamw"
    assert checkpoint.state["optimizer"]["steps"] == trainer.progress.step == 12
    assert checkpoint.metadata["source_sha256"] == trainer.network.source_hash()


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path, model_file, dataset_dir):
    run = tmp_path / "run"
    Trainer(config(model_file, dataset_dir, epochs=1), run).run()
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.safetensors: not a readable"):
        Trainer(config(model_file, dataset_dir, epochs=1), run, resume=True)

    other = tmp_path / "other.cnn"
    other.write_text(MODEL.replace("fc(4)", "fc(4, bias = false)"))
    run2 = tmp_path / "run2"
    Trainer(config(model_file, dataset_dir, epochs=1), run2).run()
    with pytest.raises(CheckpointError, match="model's source changed|trained from model"):
        Trainer(config(other, dataset_dir, epochs=1), run2, resume=True)


def test_changed_settings_cannot_resume(tmp_path, model_file, dataset_dir):
    run = tmp_path / "run"
    Trainer(config(model_file, dataset_dir, epochs=1), run).run()
    with pytest.raises(TrainingError, match="lr: 0.05 then, 0.1 now"):
        Trainer(config(model_file, dataset_dir, epochs=1, lr=0.1), run, resume=True)


def test_existing_run_is_not_overwritten(tmp_path, model_file, dataset_dir):
    run = tmp_path / "run"
    Trainer(config(model_file, dataset_dir, epochs=1), run).run()
    before = (run / CHECKPOINT).read_bytes()
    with pytest.raises(TrainingError, match="already holds a run"):
        Trainer(config(model_file, dataset_dir, epochs=1), run)
    assert (run / CHECKPOINT).read_bytes() == before
    Trainer(config(model_file, dataset_dir, epochs=1, seed=4), run, force=True).run()
    assert (run / CHECKPOINT).read_bytes() != before


def test_nonfinite_loss_names_step_and_layer_and_keeps_checkpoint(tmp_path, model_file, dataset_dir):
    run = tmp_path / "run"
    trainer = Trainer(config(model_file, dataset_dir, epochs=3), run)

    def poison(record):
        if record["step"] == 15:  # in the second epoch, after the first checkpoint
            trainer.network.params["conv1.weight"][0, 0, 1, 1] = np.nan

    trainer.hooks = Hooks(on_step=poison)
    with pytest.raises(TrainingError) as error:
        trainer.run()
    message = str(error.value)
    assert "at step 16 (epoch 2, batch 4)" in message
    assert "layer 'conv1'" in message and "conv1.weight" in message
    checkpoint = load_checkpoint(run / CHECKPOINT)
    assert checkpoint.state["progress"]["step"] == 12
    assert np.isfinite(checkpoint.model["conv1.weight"]).all()


def test_model_that_does_not_fit_the_data(tmp_path, model_file, dataset_dir):
    wrong = tmp_path / "wrong.cnn"
    wrong.write_text(MODEL.replace("fc(4)", "fc(10)"))
    with pytest.raises(TrainingError, match=r"outputs 10 scores but .* has 4 classes; make the last layer fc\(4\)"):
        Trainer(config(wrong, dataset_dir), tmp_path / "run")


def test_bad_schedule_is_a_clear_error(tmp_path, model_file, dataset_dir):
    with pytest.raises(TrainingError, match="schedule"):
        Trainer(config(model_file, dataset_dir, schedule="sometimes"), tmp_path / "run")


def test_images_far_smaller_than_the_input_are_refused(tmp_path, dataset_dir):
    big = tmp_path / "big.cnn"
    big.write_text(MODEL.replace("input 1x12x12", "input 1x64x64"))
    with pytest.raises(DataError, match=r"images are 12x12 but the network expects 64x64.*--input 1x12x12"):
        Trainer(config(big, dataset_dir), tmp_path / "run")
