"""``cnnlang train MODEL --data SPEC``: train a classifier, with validation each epoch, a metrics
log, atomic checkpoints, exact ``--resume`` and a clean stop on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import MISSING
import signal
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..train.config import CHECKPOINT, TrainConfig, options
from ..train.display import Display
from .common import input_size

#: Options whose values are not read by the type of their default.
TYPES = {"input": input_size, "data": str, "data_dir": str, "limit": int}


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "train", help="train a model on a dataset",
        description="Train MODEL on a dataset with mini-batch SGD (or Adam/AdamW). Each epoch ends with "
        "validation, a line in OUT/metrics.jsonl and an atomic checkpoint (OUT/checkpoint.safetensors); the "
        "best and last weights go to OUT/best.safetensors and OUT/last.safetensors. Ctrl-C saves and stops; "
        "--resume continues exactly where the run stopped.",
    )
    parser.add_argument("model", metavar="MODEL", nargs="?", help="a .cnn file or zoo model (optional with --resume)")
    parser.add_argument("--out", metavar="DIR", help="run folder (default runs/MODEL)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (or runs/MODEL) from its checkpoint")
    parser.add_argument("--force", action="store_true", help="start a new run in a folder that holds one")
    for f in options():
        settings = dict(f.metadata["option"])
        flag = settings.pop("flag") or "--" + f.name.replace("_", "-")
        if "action" not in settings:
            settings["type"] = TYPES.get(f.name, type(f.default) if f.default not in (None, MISSING) else int)
            settings["default"] = None if f.default is MISSING else f.default
            if f.default not in (None, MISSING):
                settings["help"] = f"{settings['help']} (default {f.default})".lstrip()
        parser.add_argument(flag, dest=f.name, **settings)
    return parser


def config_from(args: argparse.Namespace) -> TrainConfig:
    if not args.model or not args.data:
        raise UsageError("cnnlang train needs MODEL and --data (or --resume to continue a run)")
    return TrainConfig(model=args.model, **{f.name: getattr(args, f.name) for f in options()})


def run(args: argparse.Namespace) -> int:
    # Imported here: the runtime (numba) is slow to load, and other commands do not need it.
    from ..train.checkpoint import checkpoint_state
    from ..train.trainer import Hooks, Interrupted, Trainer, TrainingError

    out = Path(args.out) if args.out else Path("runs") / Path(args.model or "").stem
    if args.resume:
        if not args.out and not args.model:
            raise UsageError("--resume needs --out DIR (or MODEL, for runs/MODEL)")
        if not (out / CHECKPOINT).is_file():
            raise TrainingError(f"{out / CHECKPOINT}: no checkpoint to resume from")
        config = TrainConfig.from_json(checkpoint_state(out / CHECKPOINT)["config"])
        if args.data_dir:
            config.data_dir = args.data_dir  # the data may have moved; it does not change the run
    else:
        config = config_from(args)
    display = Display(sys.stdout)
    stop = _StopFlag()
    hooks = Hooks(display.epoch_start, display.step, display.epoch_end, stop.is_set)
    started = time.perf_counter()
    with stop.installed():
        trainer = Trainer(config, out, resume=args.resume, force=args.force, hooks=hooks)
        display.start(trainer)
        try:
            trainer.run()
        except Interrupted as interrupted:
            display.close()
            print(f"interrupted: saved {interrupted.checkpoint} at step {interrupted.step}; "
                  f"continue with: cnnlang train --resume --out {out}", file=sys.stderr)
            return 130
        except TrainingError:
            display.close()
            raise
    display.finish(trainer, time.perf_counter() - started)
    return 0


class _StopFlag:
    """The first Ctrl-C asks the loop to save and stop after the current step; a second one
    stops at once (the last checkpoint stays as it was)."""

    def __init__(self) -> None:
        self.requested = False

    def is_set(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    @contextlib.contextmanager
    def installed(self):
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
