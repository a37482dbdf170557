"""Everything that defines a training run; stored in the run folder and in every checkpoint so
``--resume`` continues the same run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

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
        if problems:
            from cnnlang.errors import UsageError

            raise UsageError("; ".join(problems))
