"""``cnnlang train``'s options are TrainConfig's fields (cnnlang/train/config.py): every option
sets its field, the defaults are the dataclass's, and a field declared as an option is offered."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from cnnlang.cli import train
from cnnlang.train.config import TrainConfig, options


def parse(*argv: str) -> TrainConfig:
    parser = train.add_parser(argparse.ArgumentParser().add_subparsers())
    return train.config_from(parser.parse_args(list(argv)))


def test_defaults_are_the_dataclass_defaults():
    assert parse("lenet5", "--data", "mnist") == TrainConfig(model="lenet5", data="mnist")


def test_every_option_sets_its_field():
    config = parse(
        "lenet5", "--data", "mnist", "--input", "1x28x28", "--data-dir", "d", "--no-download", "--epochs", "3",
        "--batch", "8", "--optimizer", "adam", "--lr", "0.1", "--momentum", "0.5", "--nesterov",
        "--weight-decay", "0", "--schedule", "constant", "--warmup", "1", "--label-smoothing", "0.1",
        "--val-split", "0.2", "--crop", "2", "--flip", "--limit", "100", "--seed", "7", "--dtype", "float64",
        "--log-every", "5", "--sync-bn",
    )
    assert config == TrainConfig(
        model="lenet5", data="mnist", input=(1, 28, 28), data_dir=str(Path("d").resolve()), download=False, epochs=3, batch_size=8,
        optimizer="adam", lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.0, schedule="constant", warmup=1.0,
        label_smoothing=0.1, val_split=0.2, crop=2, flip=True, limit=100, seed=7, dtype="float64", log_every=5,
        sync_bn=True,
    )
    # Not options: the model (positional), and what a run sets itself (ranks from mpiexec).
    assert {f.name for f in fields(TrainConfig)} - {f.name for f in options()} == {
        "model", "eval_batch", "ranks", "schedule_epochs"
    }
