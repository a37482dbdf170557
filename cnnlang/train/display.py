"""What `cnnlang train` shows while it runs: a live rich progress bar (loss, accuracy, images/s,
ETA) on a terminal, one plain line per epoch otherwise (logs, CI)."""

from __future__ import annotations

import os
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..text import plural


TERMINAL_VARIABLE = "CNNLANG_TERMINAL"


class Display:
    def __init__(self, stream: TextIO):
        # Under `--ranks`, mpiexec hands rank 0 a pseudo-terminal even when the user's output goes
        # to a file or pipe; the launcher says what the user's really is.
        terminal = {"1": True, "0": False}.get(os.environ.get(TERMINAL_VARIABLE, ""))
        self.console = Console(file=stream, highlight=False, soft_wrap=True, force_terminal=terminal)
        self.live = self.console.is_terminal
        self.bar: Progress | None = None
        self.task = None
        self.epoch_started = 0.0
        self.images = 0
        self.val_name = "validation"

    def start(self, trainer) -> None:
        c, data = trainer.config, trainer.data
        self.val_name = data.val_name
        self.epochs = c.epochs
        self.batch_size = c.batch_size * c.ranks  # images per step, over all ranks
        resumed = f", resuming at epoch {trainer.progress.epoch + 1} batch {trainer.progress.batch + 1}" if trainer.progress.step else ""
        ranks = f" on each of {c.ranks} ranks" if c.ranks > 1 else ""
        self.console.print(
            f"training {trainer.model.name} on {c.data}: {len(data.train):,} examples, {data.val_name} {len(data.val):,}; "
            f"{c.optimizer} lr {c.lr:g} ({trainer.schedule.describe()}), batch {c.batch_size}{ranks}, {plural(c.epochs, 'epoch')}{resumed}"
        )
        self.console.print(f"run folder: {trainer.out}")

    def epoch_start(self, epoch: int, batches: int) -> None:
        self.epoch_started = time.perf_counter()
        self.images = 0
        if not self.live:
            return
        if self.bar is None:
            self.bar = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  {task.fields[speed]} img/s"),
                TimeRemainingColumn(), console=self.console, transient=True,
            )
            self.bar.start()
        label = f"{epoch + 1}/{self.epochs}"
        self.task = self.bar.add_task("train", total=batches, epoch=label, loss="-", acc="-", speed="-")

    def step(self, record: dict) -> None:
        self.images += self.batch_size
        if self.bar is None or self.task is None:
            return
        elapsed = time.perf_counter() - self.epoch_started
        self.bar.update(
            self.task, completed=record["batch"], loss=f"{record['train_loss']:.4f}",
            acc=f"{record['train_accuracy']:.2%}", speed=f"{self.images / elapsed:,.0f}" if elapsed > 0 else "-",
        )

    def epoch_end(self, record: dict) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
        v = self.val_name
        speed = record.get("images_per_s")
        self.console.print(
            f"epoch {record['epoch']}/{self.epochs}: train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.2%} | "
            f"{v} loss {record[f'{v}_loss']:.4f} acc {record[f'{v}_accuracy']:.2%} | lr {record['lr']:.3g} | "
            f"{record['seconds']:.1f} s" + (f", {speed:,.0f} img/s" if speed else "")
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def finish(self, trainer, seconds: float) -> None:
        self.close()
        best = trainer.progress.best_accuracy
        self.console.print(
            f"done in {seconds:.1f} s; best {self.val_name} accuracy {best:.2%} "
            f"(weights: {trainer.out / 'best.safetensors'}; metrics: {trainer.out / 'metrics.jsonl'})"
        )
