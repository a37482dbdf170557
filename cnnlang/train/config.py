"""Everything that defines a training run; stored in the run folder and in every checkpoint so
``--resume`` continues the same run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..text import plural

# The files of a run folder.
CHECKPOINT = "checkpoint.safetensors"
BEST = "best.safetensors"
LAST = "last.safetensors"
METRICS = "metrics.jsonl"
CONFIG = "config.json"


@dataclass
class TrainConfig:
    model: str
    data: str
    input: tuple[int, ...] | None = None  # overrides the model's declared input size
    data_dir: str | None = None
    download: bool = True
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup: float = 0.0
    label_smoothing: float = 0.0
    val_split: float = 0.1  # a fraction (< 1) or a count of training examples held out
    crop: int = 0  # random-crop padding in pixels (0: none)
    flip: bool = False
    limit: int | None = None  # train on the first N training examples only
    seed: int = 0
    dtype: str = "float32"
    log_every: int = 50
    eval_batch: int = 256
    # Data parallelism: ``batch_size`` is per rank, so a step sees ranks * batch_size examples.
    ranks: int = 1
    sync_bn: bool = False
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
