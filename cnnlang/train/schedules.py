"""Learning-rate schedules: the learning rate as a function of fractional epoch (2.5 is half-way
through the third epoch), so the trainer can ask every step and cosine and warm-up move smoothly.

``Plateau`` alone has state that depends on the run (it watches a validation metric); every
schedule still saves and restores its whole configuration so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence


class Schedule:
    """The learning rate at a point of training; subclasses define ``lr``."""

    kind = ""
    fields: tuple[str, ...] = ()

    def lr(self, epoch: float) -> float:
        raise NotImplementedError

    def observe(self, metric: float, epoch: int) -> None:
        """A validation metric at the end of ``epoch``; only Plateau uses it."""

    def describe(self) -> str:
        raise NotImplementedError

    def state(self) -> dict:
        """The kind and every field, as plain JSON data."""
        return {"kind": self.kind, **{name: _plain(getattr(self, name)) for name in self.fields}}

    def load_state(self, state: dict) -> None:
        """Restore what ``state`` gave; ValueError for another kind or a missing field."""
        if state.get("kind") != self.kind:
            raise ValueError(f"schedule state is for {state.get('kind')!r}, but this schedule is {self.kind!r}")
        missing = [name for name in self.fields if name not in state]
        if missing:
            raise ValueError(f"{self.kind} schedule state lacks {', '.join(missing)}")
        for name in self.fields:
            value = state[name]
            setattr(self, name, tuple(value) if isinstance(value, list) else value)


class Constant(Schedule):
    kind = "constant"
    fields = ("base_lr",)

    def __init__(self, base_lr: float) -> None:
        self.base_lr = _non_negative("base lr", base_lr)

    def lr(self, epoch: float) -> float:
        return self.base_lr

    def describe(self) -> str:
        return f"constant {self.base_lr:g}"


class Step(Schedule):
    """base_lr * gamma ** floor(epoch / step_size)."""

    kind = "step"
    fields = ("base_lr", "step_size", "gamma")

    def __init__(self, base_lr: float, step_size: float, gamma: float = 0.1) -> None:
        self.base_lr = _non_negative("base lr", base_lr)
        self.step_size = _positive("step size", step_size)
        self.gamma = _positive("gamma", gamma)

    def lr(self, epoch: float) -> float:
        return self.base_lr * self.gamma ** math.floor(max(epoch, 0.0) / self.step_size)

    def describe(self) -> str:
        return f"step: {self.base_lr:g}, times {self.gamma:g} every {_epochs(self.step_size)}"


class MultiStep(Schedule):
    """base_lr * gamma ** (number of milestones <= epoch)."""

    kind = "multistep"
    fields = ("base_lr", "milestones", "gamma")

    def __init__(self, base_lr: float, milestones: Sequence[float], gamma: float = 0.1) -> None:
        self.base_lr = _non_negative("base lr", base_lr)
        self.milestones = tuple(float(m) for m in milestones)
        if not self.milestones or any(m <= 0 for m in self.milestones) or list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be positive and strictly increasing, got {list(milestones)}")
        self.gamma = _positive("gamma", gamma)

    def lr(self, epoch: float) -> float:
        return self.base_lr * self.gamma ** bisect_right(self.milestones, epoch)

    def describe(self) -> str:
        at = ", ".join(f"{m:g}" for m in self.milestones)
        return f"multistep: {self.base_lr:g}, times {self.gamma:g} at epochs {at}"


class Cosine(Schedule):
    """min_lr + (base_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2, held at min_lr
    after total_epochs."""

    kind = "cosine"
    fields = ("base_lr", "total_epochs", "min_lr")

    def __init__(self, base_lr: float, total_epochs: float, min_lr: float = 0.0) -> None:
        self.base_lr = _non_negative("base lr", base_lr)
        self.total_epochs = _positive("total epochs", total_epochs)
        self.min_lr = _non_negative("min lr", min_lr)

    def lr(self, epoch: float) -> float:
        progress = min(max(epoch, 0.0), self.total_epochs) / self.total_epochs
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def describe(self) -> str:
        return f"cosine from {self.base_lr:g} to {self.min_lr:g} over {_epochs(self.total_epochs)}"


class Plateau(Schedule):
    """torch's ReduceLROnPlateau with a relative threshold. A metric better than best * (1 -
    threshold) (mode "min"; best * (1 + threshold) for "max") resets the count of bad epochs;
    when that count exceeds ``patience``, the lr is multiplied by ``factor`` (not below min_lr),
    then ``cooldown`` epochs pass in which bad epochs are not counted."""

    kind = "plateau"
    fields = ("base_lr", "factor", "patience", "threshold", "mode", "cooldown", "min_lr",
              "current_lr", "best", "bad_epochs", "cooldown_left")

    def __init__(self, base_lr: float, factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 mode: str = "min", cooldown: int = 0, min_lr: float = 0.0) -> None:
        self.base_lr = _non_negative("base lr", base_lr)
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"plateau mode must be 'min' or 'max', got {mode!r}")
        self.factor = float(factor)
        self.patience = _count("patience", patience)
        self.threshold = _non_negative("threshold", threshold)
        self.mode = mode
        self.cooldown = _count("cooldown", cooldown)
        self.min_lr = _non_negative("min lr", min_lr)
        self.current_lr = self.base_lr
        self.best: float | None = None  # None until the first observation (JSON has no infinity)
        self.bad_epochs = 0
        self.cooldown_left = 0

    def lr(self, epoch: float) -> float:
        return self.current_lr

    def observe(self, metric: float, epoch: int) -> None:
        metric = float(metric)
        if self._improves(metric):
            self.best = metric
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            reduced = max(self.current_lr * self.factor, self.min_lr)
            if self.current_lr - reduced > 1e-8:  # torch's eps: ignore reductions too small to matter
                self.current_lr = reduced
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0

    def _improves(self, metric: float) -> bool:
        if self.best is None:
            return not math.isnan(metric)
        if self.mode == "min":
            return metric < self.best * (1.0 - self.threshold)
        return metric > self.best * (1.0 + self.threshold)

    def describe(self) -> str:
        return (f"plateau: {self.base_lr:g}, times {self.factor:g} after {_epochs(self.patience)} without "
                f"{'decrease' if self.mode == 'min' else 'increase'} (now {self.current_lr:g})")


class Warmup(Schedule):
    """Linear warm-up: ``inner``'s lr times a factor rising from ``start_factor`` at epoch 0 to 1
    at ``warmup_epochs``, per step; after that, ``inner`` alone."""

    kind = "warmup"
    fields = ("warmup_epochs", "start_factor")

    def __init__(self, inner: Schedule, warmup_epochs: float, start_factor: float = 0.1) -> None:
        self.inner = inner
        self.warmup_epochs = _positive("warm-up epochs", warmup_epochs)
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"warm-up start factor must be in [0, 1], got {start_factor}")
        self.start_factor = float(start_factor)

    def lr(self, epoch: float) -> float:
        inner = self.inner.lr(epoch)
        if epoch >= self.warmup_epochs:
            return inner
        progress = max(epoch, 0.0) / self.warmup_epochs
        return inner * (self.start_factor + (1.0 - self.start_factor) * progress)

    def observe(self, metric: float, epoch: int) -> None:
        self.inner.observe(metric, epoch)

    def describe(self) -> str:
        return f"linear warm-up over {_epochs(self.warmup_epochs)} from {self.start_factor:g}x, then {self.inner.describe()}"

    def state(self) -> dict:
        return {**super().state(), "inner": self.inner.state()}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if "inner" not in state:
            raise ValueError("warmup schedule state lacks inner")
        self.inner.load_state(state["inner"])


FORMS = ("constant, step:SIZE[:GAMMA], multistep:EPOCH,EPOCH,...[:GAMMA], cosine[:MIN_LR], "
         "plateau[:PATIENCE[:FACTOR]]")


def _epochs(count: float) -> str:
    return f"{count:g} epoch" + ("" if count == 1 else "s")


def parse_schedule(text: str, base_lr: float, epochs: int, warmup: float = 0.0) -> Schedule:
    """The schedule a command line names (see FORMS), e.g. ``step:30:0.1`` or ``cosine:1e-5``;
    with ``warmup`` > 0 epochs, wrapped in a linear Warmup."""
    try:
        schedule = _parse(text.strip(), base_lr, epochs)
    except ValueError as error:
        raise ValueError(f"bad learning-rate schedule {text!r}: {error}; the forms are: {FORMS}") from None
    if warmup < 0:
        raise ValueError(f"warm-up epochs must be >= 0, got {warmup}")
    return Warmup(schedule, warmup) if warmup > 0 else schedule


def _parse(text: str, base_lr: float, epochs: int) -> Schedule:
    kind, *args = text.split(":")
    limits = {"constant": 0, "step": 2, "multistep": 2, "cosine": 1, "plateau": 2}
    if kind not in limits:
        raise ValueError(f"unknown kind {kind!r}")
    if len(args) > limits[kind] or (kind in ("step", "multistep") and not args):
        raise ValueError(f"wrong number of ':' fields for {kind}")
    if kind == "constant":
        return Constant(base_lr)
    if kind == "step":
        return Step(base_lr, _number(args[0], "step size"), *(_number(a, "gamma") for a in args[1:]))
    if kind == "multistep":
        milestones = [_number(m, "milestone") for m in args[0].split(",")]
        return MultiStep(base_lr, milestones, *(_number(a, "gamma") for a in args[1:]))
    if kind == "cosine":
        return Cosine(base_lr, epochs, *(_number(a, "min lr") for a in args))
    options = {}
    if args:
        options["patience"] = _count("patience", _number(args[0], "patience"))
    if len(args) > 1:
        options["factor"] = _number(args[1], "factor")
    return Plateau(base_lr, **options)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {text!r}")
    return value


def _count(what: str, value: float) -> int:
    if value != int(value) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0, got {value}")
    return int(value)


def _positive(what: str, value: float) -> float:
    value = float(value)
    if not value > 0.0:
        raise ValueError(f"{what} must be > 0, got {value}")
    return value


def _non_negative(what: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _plain(value):
    return list(value) if isinstance(value, tuple) else value
