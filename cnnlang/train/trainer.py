"""The training loop: mini-batch SGD (or Adam) over a dataset, validation each epoch, a metrics
log, atomic checkpoints and exact resume.

Exactness: the data order of epoch e depends only on (seed, e), each batch's augmentation only on
(seed, e, batch), and dropout's random numbers only on (seed, step); the checkpoint holds the
parameters, buffers, optimiser slots, schedule state and the partial epoch's running sums. So a
run stopped anywhere and resumed computes the same numbers as one that never stopped.

(~360 lines: the loop, its checkpoint state and its refusals of bad data and files are one
object's life cycle; losses, optimisers, schedules, checkpoints and display are modules of their own.)
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import cnnlang
from cnnlang.data import Augment, Batches, DataError, Dataset, Normalizer, load_dataset, split_validation
from cnnlang.errors import UsageError
from cnnlang.files import file_system_problem, remove_temporaries, write_text_atomically

from .checkpoint import Checkpoint, check_fields, check_source, load_checkpoint, save_checkpoint
from .config import BEST, CHECKPOINT, CONFIG, LAST, METRICS, TrainConfig
from .distributed import Team
from .evaluate import Evaluation
from .losses import CrossEntropy
from .nonfinite import first_nonfinite
from .optim import make_optimizer
from .schedules import parse_schedule



class TrainingError(UsageError):
    """Training cannot go on (non-finite loss, a run folder in the way, a model that does not fit)."""


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C) after saving a checkpoint."""

    def __init__(self, checkpoint: Path, step: int):
        super().__init__(f"stopped at step {step}; resume with --resume ({checkpoint})")
        self.checkpoint = checkpoint
        self.step = step


@dataclass
class Progress:
    """Where the run stands: the next batch to train is ``batch`` of ``epoch``."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    best_accuracy: float = -1.0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Data:
    train: Dataset
    val: Dataset
    val_name: str  # "validation" or "test": what the per-epoch numbers are measured on
    normalizer: Normalizer


@dataclass
class Hooks:
    """Callbacks for the progress display, and a flag the Ctrl-C handler sets."""

    on_epoch_start: Callable[[int, int], None] = lambda epoch, batches: None
    on_step: Callable[[dict], None] = lambda record: None
    on_epoch_end: Callable[[dict], None] = lambda record: None
    stop_requested: Callable[[], bool] = lambda: False


def prepare_data(config: TrainConfig, input_shape: tuple[int, ...], classes: int,
                 normalizer: Normalizer | None = None) -> Data:
    """Load, fit to the network's input, hold out validation, and fit the normaliser on the
    training part only (unless a resumed run brings its own)."""
    train = load_dataset(config.data, "train", data_dir=config.data_dir, download=config.download)
    if classes != len(train.classes):
        raise TrainingError(
            f"the model outputs {classes} scores but {config.data} has {len(train.classes)} classes; "
            f"make the last layer fc({len(train.classes)})"
        )
    if config.limit is not None and config.limit < len(train):
        train = train.subset(np.arange(config.limit))
    train = train.fitted(input_shape)
    if config.val_split > 0:
        amount = config.val_split if config.val_split < 1 else int(config.val_split)
        train, val = split_validation(train, amount, config.seed)
        val_name = "validation"
    else:
        val = load_dataset(config.data, "test", data_dir=config.data_dir, download=config.download)
        val = val.fitted(input_shape)
        val_name = "test"
    _check_examples(train, "training", classes)
    _check_examples(val, val_name, classes)
    return Data(train, val, val_name, normalizer or Normalizer.from_images(train.images))


def _check_examples(dataset: Dataset, role: str, classes: int) -> None:
    """Each split a run uses holds examples, all labelled with one of the model's classes."""
    if len(dataset) == 0:
        raise DataError(f"{dataset.name}: the {role} split holds no examples")
    if dataset.labels.max() >= classes:
        raise DataError(f"{dataset.name}: the {role} split has label {dataset.labels.max()}, but the model "
                        f"outputs {classes} scores (labels 0-{classes - 1})")


class Trainer:
    def __init__(self, config: TrainConfig, out: str | Path, *, resume: bool = False, force: bool = False,
                 hooks: Hooks | None = None, team: Team | None = None, backend=None):
        config.validate()
        self.config = config
        self.out = Path(out)
        self.hooks = hooks or Hooks()
        self.team = team or Team()  # the ranks of data-parallel training (one process by default)
        self.stopping = False
        checkpoint_path = self.out / CHECKPOINT
        checkpoint = None
        if self.out.is_dir():  # what a run killed while writing left behind
            remove_temporaries(self.out, (CHECKPOINT, BEST, LAST, CONFIG, METRICS))
        if resume:
            if not checkpoint_path.is_file():
                raise TrainingError(f"{checkpoint_path}: no checkpoint to resume from")
            checkpoint = load_checkpoint(checkpoint_path)
        elif self.team.writes and self.out.exists() and any(self.out.iterdir()) and not force:
            raise TrainingError(f"{self.out} already holds a run; resume it with --resume, or pass --force to start over there")
        self.model = cnnlang.load(config.model, input_shape=config.input)
        self._check_output()
        self._check_batchnorm_batches()
        # Training runs the graph as written; validation (eval mode) runs the optimised one.
        # On a GPU (``backend``) the optimiser steps the device's copies of the parameters.
        self.network = self.model.build(seed=config.seed, dtype=config.dtype, passes="all", backend=backend)
        self.loss = CrossEntropy(self.network.backend, config.label_smoothing)
        normalizer = Normalizer.from_state(checkpoint.state["normalizer"]) if checkpoint else None
        self.data = prepare_data(config, self.model.input_shape, self.model.output_shape[0], normalizer)
        net = self.network
        no_decay = [name for name in net.trainable if net.params[name].ndim == 1]  # biases, batchnorm
        try:
            self.optimizer = make_optimizer(
                config.optimizer, net.device_params, net.grads, net.trainable, lr=config.lr, momentum=config.momentum,
                weight_decay=config.weight_decay, nesterov=config.nesterov, no_decay=no_decay, backend=net.backend,
            )
            self.schedule = parse_schedule(config.schedule, config.lr, config.schedule_span, config.warmup)
        except ValueError as error:
            raise TrainingError(str(error)) from None
        self.progress = Progress()
        if checkpoint is not None:
            self._restore(checkpoint, checkpoint_path)
        elif self.team.writes:
            with self._writing(self.out):
                self.out.mkdir(parents=True, exist_ok=True)
                write_text_atomically(self.out / CONFIG, json.dumps(self.config.to_json(), indent=2) + "\n")
                write_text_atomically(self.out / METRICS, "")

    # -- checks
    def _check_output(self) -> None:
        shape = self.model.output_shape
        if len(shape) != 1:
            raise TrainingError(f"model '{self.model.name}' outputs {'x'.join(map(str, shape))}; classification needs one score per class (end with fc)")

    def _check_batchnorm_batches(self) -> None:
        """A batchnorm that sees one value per channel per example (after fc, or on a 1x1 map)
        normalises over the batch alone, which needs two examples or more in every batch."""
        graph = self.model.graph
        self.single_value_batchnorms = [
            node for node in graph if graph.nodes[node]["op"] == "batchnorm"
            and math.prod(graph.nodes[graph.nodes[node]["inputs"][0]]["shape"][1:]) == 1
        ]
        if self.single_value_batchnorms and self.config.batch_size < 2:
            node = self.single_value_batchnorms[0]
            shape = "x".join(map(str, graph.nodes[graph.nodes[node]["inputs"][0]]["shape"]))
            raise TrainingError(
                f"batchnorm '{node}' (line {graph.nodes[node]['span'].line}) gets one value per channel from each "
                f"example (its input is {shape}), so in training it normalises over the batch and needs --batch 2 or more"
            )

    # -- the loop
    def batches(self, epoch: int, start: int = 0) -> Batches:
        c = self.config
        team = self.team
        # With such a batchnorm, a last global batch of a single example is dropped (PyTorch's drop_last).
        drop_last = bool(self.single_value_batchnorms) and len(self.data.train) % (c.batch_size * team.size) == 1
        return Batches(
            self.data.train, c.batch_size * team.size, shuffle=True, seed=c.seed, epoch=epoch,
            normalizer=self.data.normalizer, augment=Augment(c.crop, c.flip), dtype=self.network.dtype,
            start_batch=start, shard=(team.rank, team.size), drop_last=drop_last,
        )

    def run(self) -> dict | None:
        """Train to the last epoch; returns the last epoch's record. Raises Interrupted after
        saving when a stop was requested, TrainingError on a non-finite loss."""
        c, p, net = self.config, self.progress, self.network
        record = None
        while p.epoch < c.epochs:
            batches = self.batches(p.epoch, p.batch)
            count = len(batches)
            self.hooks.on_epoch_start(p.epoch, count)
            started = time.perf_counter()
            net.train()
            for x, y in batches:
                self._step(x, y, count)
                if self.stopping:
                    p.seconds += time.perf_counter() - started
                    self._save_checkpoint()
                    raise Interrupted(self.out / CHECKPOINT, p.step)
            p.seconds += time.perf_counter() - started
            record = self._end_epoch()
        return record

    def _step(self, x: np.ndarray, y: np.ndarray, count: int) -> None:
        c, p, net = self.config, self.progress, self.network
        lr = self.schedule.lr(p.epoch + p.batch / count)
        self.optimizer.lr = lr
        net.context.rng = net.backend.rng([c.seed, 2, p.step, *self.team.dropout_key()])
        failure, sums = None, np.zeros(3)
        try:
            # On a GPU the logits, the loss and its gradient stay there: only the sums come back.
            logits = net.forward(x, on_backend=True)
            # With several ranks, this shard's share of the global batch: the ranks' summed
            # gradients are then its mean.
            share = len(y) / self._global_batch(p.batch) if self.team.size > 1 else 1.0
            batch = self.loss(logits, y, grad_factor=share)
            loss = batch.loss_sum / len(y)
            if not np.isfinite(loss):
                where = first_nonfinite(net) or "every layer's output is finite, so the loss itself overflowed"
                failure = TrainingError(
                    f"the loss became {loss} at step {p.step + 1} (epoch {p.epoch + 1}, batch {p.batch + 1}): {where}. "
                    f"Training stopped; the last good checkpoint is {self._last_good()}. Try a lower --lr."
                )
            # Even after a failure: the other ranks' backward (sync batchnorm) waits on this one's.
            self.team.backward(net, batch.grad)
            sums[:] = batch.loss_sum, batch.correct, len(y)
        except Exception as error:  # noqa: BLE001 - handed to finish_step, which raises it on every rank
            failure = error
        p.step += 1
        p.batch += 1
        sums, self.stopping = self.team.finish_step(failure, sums, self.hooks.stop_requested())
        self.optimizer.step()
        p.loss_sum += float(sums[0])
        p.correct += int(sums[1])
        p.seen += int(sums[2])
        record = {"kind": "step", "epoch": p.epoch + 1, "step": p.step, "lr": lr, "loss": float(sums[0] / sums[2]),
                  "train_loss": p.loss_sum / p.seen, "train_accuracy": p.correct / p.seen, "batches": count,
                  "batch": p.batch, **self.team.describe(c.batch_size)}
        if p.step % c.log_every == 0:
            self._log(record)
        self.hooks.on_step(record)

    def _end_epoch(self) -> dict:
        p = self.progress
        evaluation = self.validate()
        self.schedule.observe(evaluation.loss, p.epoch)
        record = {
            "kind": "epoch", "epoch": p.epoch + 1, "step": p.step, "lr": self.optimizer.lr,
            "train_loss": p.loss_sum / max(p.seen, 1), "train_accuracy": p.correct / max(p.seen, 1),
            f"{self.data.val_name}_loss": evaluation.loss, f"{self.data.val_name}_accuracy": evaluation.accuracy,
            f"{self.data.val_name}_top5": evaluation.top5, "seconds": p.seconds,
            "images_per_s": p.seen / p.seconds if p.seconds > 0 else None, **self.team.describe(self.config.batch_size),
        }
        self._log(record)
        improved = evaluation.accuracy > p.best_accuracy
        p.epoch += 1
        p.batch, p.correct, p.seen, p.loss_sum, p.seconds = 0, 0, 0, 0.0, 0.0
        if improved:
            p.best_accuracy = evaluation.accuracy
            self._save_weights(BEST)
        self._save_weights(LAST)
        self._save_checkpoint()
        self.hooks.on_epoch_end(record)
        return record

    def validate(self) -> Evaluation:
        net = self.network
        net.eval()
        try:
            return self.team.evaluate(net, self.data.val, self.data.normalizer, self.config.eval_batch)
        finally:
            net.train()

    # -- files
    @contextlib.contextmanager
    def _writing(self, path: Path):
        """A full disk, a read-only folder or a permission problem stops training with one
        line; files are written atomically, so the last good checkpoint stays as it was."""
        try:
            yield
        except OSError as error:
            raise TrainingError(f"cannot write {file_system_problem(error, path)}. Training stopped; "
                                f"the last good checkpoint is {self._last_good()}") from None

    def _log(self, record: dict) -> None:
        if not self.team.writes:
            return
        with self._writing(self.out / METRICS), open(self.out / METRICS, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def _state(self) -> dict:
        return {
            "progress": self.progress.to_json(),
            "optimizer": self.optimizer.state_scalars(),
            "schedule": self.schedule.state(),
            "normalizer": self.data.normalizer.state(),
            "config": self.config.to_json(),
        }

    def _save_checkpoint(self) -> None:
        if self.team.writes:
            with self._writing(self.out / CHECKPOINT):
                save_checkpoint(self.out / CHECKPOINT, self.network, self.optimizer.state_arrays(), self._state())

    def _save_weights(self, name: str) -> None:
        """A plain weight file for `run`/`eval`, with the normalisation training used."""
        if self.team.writes:
            with self._writing(self.out / name):
                self.network.save(self.out / name, overwrite=True, metadata={"normalizer": json.dumps(self.data.normalizer.state())})

    def _global_batch(self, index: int) -> int:
        """How many examples global batch ``index`` holds over all ranks (the last may be short)."""
        size = self.config.batch_size * self.team.size
        return min(size, len(self.data.train) - index * size)

    def _last_good(self) -> str:
        path = self.out / CHECKPOINT
        return str(path) if path.is_file() else "none (no epoch finished)"

    def _restore(self, checkpoint: Checkpoint, path: Path) -> None:
        check_source(checkpoint, path, self.model.name, self.network.source_hash())
        state = checkpoint.state
        saved = TrainConfig.from_json(state["config"])
        if saved.outcome() != self.config.outcome():
            raise TrainingError(f"{path} was written by a run with other settings; resume without changing options ({_difference(saved, self.config)})")
        self.network.load_arrays(checkpoint.model, str(path))
        try:
            self.optimizer.load_state(checkpoint.optimizer, state["optimizer"])
            self.schedule.load_state(state["schedule"])
        except ValueError as error:
            raise TrainingError(f"{path}: {error}") from None
        check_fields(state["progress"], Progress, "progress", path)
        self.progress = Progress(**state["progress"])
        if self.team.writes:
            _truncate_log(self.out / METRICS, self.progress.step)


def _difference(saved: TrainConfig, now: TrainConfig) -> str:
    a, b = saved.outcome(), now.outcome()
    return ", ".join(f"{k}: {a[k]!r} then, {b[k]!r} now" for k in a if a[k] != b.get(k))


def _truncate_log(path: Path, step: int) -> None:
    """Drop records written after the checkpoint (a run that crashed logged on past it)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    write_text_atomically(path, "".join(line + "\n" for line in kept))
