"""Everything that defines a training run; stored in the run folder and in every checkpoint so
``--resume`` continues the same run.

The fields are also ``cnnlang train``'s options: a field declared with :func:`option` carries its
flag, help and argparse settings, and cnnlang/cli/train.py builds the parser and the config from
them, so a setting is written once.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields
from typing import Any

# The files of a run folder.
CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
LAST = "last.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.json"


def option(default: Any = MISSING, help: str = "", *, flag: str | None = None, **argparse_settings: Any) -> Any:
    """A field that ``cnnlang train`` offers as an option: ``flag`` (default ``--field-name``),
    ``help`` and any further ``argparse.add_argument`` settings (metavar, choices, action)."""
    return field(default=default, metadata={"option": {"flag": flag, "help": help, **argparse_settings}})


def options() -> list[Field]:
    """The fields of :class:`TrainConfig` that are command-line options, in order."""
    return [f for f in fields(TrainConfig) if "option" in f.metadata]


@dataclass
class TrainConfig:
    model: str
    data: str = option(help="mnist, fashion-mnist, cifar10, or a folder (IDX files, CIFAR-10 binaries, "
                       "or one subfolder of images per class)", metavar="SPEC")
    input: tuple[int, ...] | None = option(None, "train at this input size instead of the declared one",
                                           metavar="CxHxW")
    data_dir: str | None = option(None, "where named datasets are looked for first (then $CNNLANG_DATA, "
                                  "the cache, a download)", metavar="DIR")
    download: bool = option(True, "fail instead of downloading a missing dataset", flag="--no-download",
                            action="store_false")
    epochs: int = option(10, metavar="N")
    batch_size: int = option(64, "mini-batch size", flag="--batch", metavar="N")
    optimizer: str = option("sgd", choices=("sgd", "adam", "adamw"))
    lr: float = option(0.05, "base learning rate")
    momentum: float = option(0.9, "SGD momentum")
    nesterov: bool = option(False, "Nesterov momentum", action="store_true")
    weight_decay: float = option(5e-4, "on weights, not biases or batchnorm")
    schedule: str = option("cosine", "constant, step:EPOCHS[:GAMMA], multistep:E1,E2[:GAMMA], cosine[:MIN_LR], "
                           "plateau[:PATIENCE[:FACTOR]]", metavar="SPEC")
    warmup: float = option(0.0, "linear warm-up", metavar="EPOCHS")
    label_smoothing: float = option(0.0, metavar="S")
    val_split: float = option(0.1, "hold out this fraction (or, if ≥ 1, this many) training examples for "
                              "validation; 0 validates on the test split", metavar="F")
    crop: int = option(0, "random crop after padding by this many pixels (0: off)", metavar="PIXELS")
    flip: bool = option(False, "random horizontal flips (not for digits)", action="store_true")
    limit: int | None = option(None, "train on the first N training examples only", metavar="N")
    seed: int = option(0)
    dtype: str = option("float32", choices=("float32", "float64"))
    log_every: int = option(50, "steps between metrics-log lines", metavar="STEPS")
    eval_batch: int = 256

    def to_json(self) -> dict:
        data = asdict(self)
        data["input"] = list(self.input) if self.input else None
        return data

    def outcome(self) -> dict:
        """The settings that change the numbers a run computes (not where the data lives, or
        how often it logs): a run resumes only with these unchanged."""
        data = self.to_json()
        for key in ("data_dir", "download", "log_every", "eval_batch"):
            data.pop(key)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("input"):
            values["input"] = tuple(values["input"])
        return cls(**values)

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("--epochs must be at least 1")
        if self.batch_size < 1:
            problems.append("--batch must be at least 1")
        if self.lr <= 0:
            problems.append("--lr must be positive")
        if not 0 <= self.label_smoothing < 1:
            problems.append("--label-smoothing must be in [0, 1)")
        if self.val_split < 0:
            problems.append("--val-split must be a fraction in [0, 1) or a count of examples")
        if self.crop < 0:
            problems.append("--crop must be 0 or more pixels")
        if self.limit is not None and self.limit < 1:
            problems.append("--limit must be at least 1")
        if self.log_every < 1:
            problems.append("--log-every must be at least 1 step")
        if problems:
            from cnnlang.errors import UsageError

            raise UsageError("; ".join(problems))
