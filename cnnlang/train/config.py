"""Everything that defines a training run; stored in the run folder and in every checkpoint so
``--resume`` continues the same run.

The fields are also ``cnnlang train``'s options: a field declared with :func:`option` carries its
flag, help and argparse settings, and cnnlang/cli/train.py builds the parser and the config from
them, so a setting is written once.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..text import plural

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
    epochs: int = option(10, "with --resume, extends (or shortens) the run, its schedule continuing as laid out",
                         metavar="N", unset=True)
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
    # Data parallelism: ``batch_size`` is per rank, so a step sees ranks * batch_size examples.
    ranks: int = 1
    sync_bn: bool = option(False, "with several ranks, batchnorm uses the whole global batch's statistics "
                           "(exactly one process's numbers)", action="store_true")
    # The epochs the learning-rate schedule was laid out over, when a resumed run was extended
    # past them (None: ``epochs``).
    schedule_epochs: int | None = None

    @property
    def schedule_span(self) -> int:
        return self.schedule_epochs or self.epochs

    def to_json(self) -> dict:
        data = asdict(self)
        data["input"] = list(self.input) if self.input else None
        return data

    def outcome(self) -> dict:
        """The settings that change the numbers a run computes (not where the data lives, how
        often it logs, or how many epochs it runs: the schedule's span stands for those): a run
        resumes only with these unchanged."""
        data = self.to_json()
        for key in ("data_dir", "download", "log_every", "eval_batch", "epochs", "schedule_epochs"):
            data.pop(key)
        data["schedule_span"] = self.schedule_span
        return data

    def with_absolute_paths(self) -> "TrainConfig":
        """Model, data and data folder as absolute paths where they name files, so a run can
        be resumed from any working directory (zoo and dataset names stay names)."""
        def absolute(text: str | None) -> str | None:
            return str(Path(text).resolve()) if text and Path(text).exists() else text

        return replace(self, model=absolute(self.model), data=absolute(self.data),
                       data_dir=str(Path(self.data_dir).resolve()) if self.data_dir else None)

    def extended(self, epochs: int, done: int) -> tuple["TrainConfig", str]:
        """This run set to ``epochs`` epochs after ``done`` have been trained, and a sentence on
        the learning rate of the epochs added. The schedule continues as it was laid out: every
        schedule's lr is defined past its span (cosine holds its final value), and a schedule that
        ends at lr 0 is refused, since epochs trained at lr 0 would not change the weights."""
        from cnnlang.errors import UsageError

        from .schedules import parse_schedule

        if epochs < max(done, 1):
            raise UsageError(f"this run has trained {plural(done, 'epoch')}; --epochs must be at least {max(done, 1)}")
        span = self.schedule_span
        schedule = parse_schedule(self.schedule, self.lr, span, self.warmup)
        if epochs > span and not schedule.lr(span) > 0:
            raise UsageError(
                f"this run's schedule ({schedule.describe()}) ends at lr 0 after epoch {span}, so more epochs "
                f"would not change the weights; start a new run with --epochs {epochs}, or give the schedule a "
                "floor above 0 when you do (e.g. --schedule cosine:1e-4)"
            )
        note = (f"the run now ends after epoch {epochs} (it was {self.epochs}); the learning rate follows the "
                f"schedule as it was laid out ({schedule.describe()})"
                + (f", continued past epoch {span}" if epochs > span else ""))
        return replace(self, epochs=epochs, schedule_epochs=span), note

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
