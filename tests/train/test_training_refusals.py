"""Hostile training input (issue 17): empty splits, labels out of range, --log-every 0, batchnorm
on single values, tampered checkpoints, leftovers of a killed run, a full or read-only disk.
Each is one clear error (exit 2 from the CLI), never an internal error."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
from synthetic import synthetic_digits

from cnnlang.cli import main
from cnnlang.data import DataError, write_idx
from cnnlang.errors import UsageError
from cnnlang.runtime.weights import load_weights, save_weights
from cnnlang.train.checkpoint import CheckpointError
from cnnlang.train.config import TrainConfig
from cnnlang.train.trainer import CHECKPOINT, Trainer, TrainingError

BN_AFTER_FC = """
network bnfc {
    input 1x12x12
    flatten
    fc(8) -> batchnorm -> relu
    fc(4)
}
"""


def config(model_file, data, **changes) -> TrainConfig:
    values = dict(model=str(model_file), data=str(data), epochs=1, batch_size=64, lr=0.05, log_every=4,
                  val_split=0.25, seed=3, dtype="float32", limit=128)
    values.update(changes)
    return TrainConfig(**values)


def idx_folder(folder, train_count=64, test_count=16, test_labels=None):
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train_count), ("t10k", test_count)):
        images, labels = synthetic_digits(max(count, 1), 5)
        images, labels = images[:count], labels[:count]
        if split == "t10k" and test_labels is not None:
            labels = np.asarray(test_labels, dtype=np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


def test_an_empty_test_split_is_a_data_error(tmp_path, model_file):
    data = idx_folder(tmp_path / "data", test_count=0)
    with pytest.raises(DataError, match="the test split holds no examples"):
        Trainer(config(model_file, data, val_split=0), tmp_path / "run")


def test_a_label_beyond_the_models_classes_is_a_data_error(tmp_path, model_file):
    data = idx_folder(tmp_path / "data", test_count=3, test_labels=[0, 1, 12])
    with pytest.raises(DataError, match="has label 12, but the model outputs 4 scores"):
        Trainer(config(model_file, data, val_split=0), tmp_path / "run")


def test_log_every_zero_is_a_usage_error(tmp_path, model_file, dataset_dir, capsys):
    status = main(["train", str(model_file), "--data", str(dataset_dir), "--out", str(tmp_path / "run"),
                   "--log-every", "0", "--epochs", "1"])
    assert status == 2 and "--log-every must be at least 1" in capsys.readouterr().err


def test_batch_of_one_with_batchnorm_after_fc_names_the_layer(tmp_path, dataset_dir):
    model = tmp_path / "bnfc.cnn"
    model.write_text(BN_AFTER_FC)
    with pytest.raises(TrainingError, match=r"batchnorm 'batchnorm1' \(line 5\).*needs --batch 2 or more"):
        Trainer(config(model, dataset_dir, batch_size=1), tmp_path / "run")


def test_a_last_batch_of_one_is_dropped_with_batchnorm_after_fc(tmp_path, dataset_dir):
    model = tmp_path / "bnfc.cnn"
    model.write_text(BN_AFTER_FC)
    # 129 examples, 25% held out: 97 to train in batches of 32 leaves a last batch of one.
    trainer = Trainer(config(model, dataset_dir, batch_size=32, limit=129), tmp_path / "run")
    assert len(trainer.data.train) == 97 and len(trainer.batches(0)) == 3
    assert trainer.run()["epoch"] == 1


def _trained(tmp_path, model_file, dataset_dir):
    trainer = Trainer(config(model_file, dataset_dir), tmp_path / "run")
    trainer.run()
    return tmp_path / "run" / CHECKPOINT


def _tamper(path, change):
    arrays, metadata = load_weights(path)
    state = json.loads(metadata["state"])
    change(state)
    metadata["state"] = json.dumps(state)
    save_weights(path, arrays, metadata, overwrite=True)


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.pop("config"), "no config"),
    (lambda s: s.pop("progress"), "no progress"),
    (lambda s: s.update(surprise=1), "unknown 'surprise'"),
    (lambda s: s["progress"].update(step="seven"), "progress: 'step' is 'seven'"),
    (lambda s: s["config"].update(epochs="2"), "config: 'epochs' is '2'"),
    (lambda s: s["config"].update(colour="red"), "config: unknown 'colour'"),
    (lambda s: s["optimizer"].update(lr="fast"), "optimizer.lr is 'fast'"),
])
def test_a_tampered_checkpoint_is_refused_before_use(tmp_path, model_file, dataset_dir, change, expected):
    path = _trained(tmp_path, model_file, dataset_dir)
    _tamper(path, change)
    with pytest.raises(CheckpointError, match="damaged") as caught:
        Trainer(config(model_file, dataset_dir), tmp_path / "run", resume=True)
    assert expected in str(caught.value)


def test_a_tampered_checkpoint_is_exit_2_from_the_cli(tmp_path, model_file, dataset_dir, capsys):
    path = _trained(tmp_path, model_file, dataset_dir)
    _tamper(path, lambda s: s.pop("config"))
    assert main(["train", "--resume", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "no config" in err and "internal error" not in err


def test_leftovers_of_a_killed_write_are_removed_on_resume_and_force(tmp_path, model_file, dataset_dir):
    run = _trained(tmp_path, model_file, dataset_dir).parent
    leftovers = [run / ".checkpoint.safetensors.k9x2_abc.safetensors", run / ".last.safetensors.zz00yy11.safetensors",
                 run / ".metrics.jsonl.a1b2c3d4.jsonl"]
    mine = run / "notes.checkpoint.safetensors.txt"  # a user's file is never touched
    for path in [*leftovers, mine]:
        path.write_bytes(b"partial")
    Trainer(config(model_file, dataset_dir), run, resume=True)
    assert not any(p.exists() for p in leftovers) and mine.exists()
    leftovers[0].write_bytes(b"partial")
    Trainer(config(model_file, dataset_dir), run, force=True)
    assert not leftovers[0].exists()


@pytest.mark.parametrize("code, hint", [(errno.ENOSPC, "free some space"), (errno.EROFS, "read-only")])
def test_a_full_or_read_only_disk_stops_with_the_last_good_checkpoint(tmp_path, model_file, dataset_dir,
                                                                       monkeypatch, code, hint):
    import cnnlang.train.trainer as trainer_module

    trainer = Trainer(config(model_file, dataset_dir, epochs=2), tmp_path / "run")
    trainer.run()  # epochs 1 and 2 saved
    saved = (tmp_path / "run" / CHECKPOINT).read_bytes()
    trainer.config.epochs = 3

    def failing(*args, **kwargs):
        raise OSError(code, "the disk said no", str(tmp_path / "run" / ".checkpoint.safetensors.x"))

    monkeypatch.setattr(trainer_module, "save_checkpoint", failing)
    monkeypatch.setattr(type(trainer.network), "save", failing)
    with pytest.raises(TrainingError) as caught:
        trainer.run()
    message = str(caught.value)
    assert hint in message and f"the last good checkpoint is {tmp_path / 'run' / CHECKPOINT}" in message
    assert isinstance(caught.value, UsageError)
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == saved


def test_a_read_only_run_folder_is_exit_2(tmp_path, model_file, dataset_dir, monkeypatch, capsys):
    import cnnlang.train.trainer as trainer_module

    def read_only(path, text):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(trainer_module, "write_text_atomically", read_only)
    status = main(["train", str(model_file), "--data", str(dataset_dir), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert status == 2 and "read-only" in err and "internal error" not in err
