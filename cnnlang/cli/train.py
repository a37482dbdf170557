"""``cnnlang train MODEL --data SPEC``: train a classifier, with validation each epoch, a metrics
log, atomic checkpoints, exact ``--resume`` and a clean stop on Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import os
from dataclasses import MISSING
import signal
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..text import plural
from ..train.config import CHECKPOINT, TrainConfig, options
from ..train.distributed import DEFAULT_TIMEOUT
from ..train.display import Display
from .common import add_device_option, device_backend, input_size

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
            # unset: the option's absence is seen (None) and the field's default applies later
            settings["default"] = None if f.default is MISSING or settings.pop("unset", False) else f.default
            if f.default not in (None, MISSING):
                settings["help"] = f"{settings['help']} (default {f.default})".lstrip()
        parser.add_argument(flag, dest=f.name, **settings)
    parser.add_argument("--ranks", type=int, metavar="N",
                        help="data-parallel training on N processes: starts mpiexec for you (the same as mpiexec -n N cnnlang train ...; "
                        "needs cnnlang[mpi]); --batch is per rank, so a step sees N x --batch examples")
    parser.add_argument("--comm-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"with several ranks, stop every rank when the others do not answer for this long (default {DEFAULT_TIMEOUT:g})")
    add_device_option(parser)
    return parser


def config_from(args: argparse.Namespace) -> TrainConfig:
    if not args.model or not args.data:
        raise UsageError("cnnlang train needs MODEL and --data (or --resume to continue a run)")
    values = {f.name: getattr(args, f.name) for f in options()}
    defaults = {f.name: f.default for f in options() if f.default is not MISSING}
    values = {name: defaults.get(name) if value is None else value for name, value in values.items()}
    return TrainConfig(model=args.model, **values).with_absolute_paths()


def run(args: argparse.Namespace) -> int:
    # Imported here: the runtime (numba) is slow to load, and other commands do not need it.
    from ..train.distributed import RankFailed, connect, launched_by_mpi
    from ..train.launch import launch
    from ..train.trainer import Hooks, Interrupted, Trainer, TrainingError

    if args.ranks is not None and args.ranks < 1:
        raise UsageError("--ranks must be at least 1")
    backend = device_backend(args)  # a GPU that cannot run: one line now, before data or ranks
    if backend.name != "cpu" and (args.ranks or 1) > 1:
        raise UsageError(f"--device {args.device} trains on one process; data-parallel --ranks runs on the CPU only")
    if args.ranks is not None and not launched_by_mpi():
        return launch(args.ranks, args.argv)
    team = connect(args.comm_timeout)
    if args.ranks is not None and args.ranks != team.size:
        raise UsageError(f"--ranks {args.ranks}, but mpiexec started {team.size} rank(s); give one or the other")
    if backend.name != "cpu" and team.size > 1:
        raise UsageError(f"--device {args.device} trains on one process; data-parallel training runs on the CPU only")

    out = Path(args.out) if args.out else Path("runs") / Path(args.model or "").stem
    if args.resume and _finished(args, out):
        return 0
    # Rank 0 alone reports; the other ranks' display writes nowhere.
    display = Display(sys.stdout if team.writes else open(os.devnull, "w"))
    stop = _StopFlag()
    hooks = Hooks(display.epoch_start, display.step, display.epoch_end, stop.is_set)
    started = time.perf_counter()
    with stop.installed(), team.abort_on_error():
        trainer, failure = None, None
        try:
            config = _config(args, out, team)
            trainer = Trainer(config, out, resume=args.resume, force=args.force, hooks=hooks, team=team, backend=backend)
        except Exception as error:  # noqa: BLE001 - every rank learns of it in agree()
            failure = error
        try:
            team.agree(failure)
            team.attach(trainer)
            display.start(trainer)
            trainer.run()
        except Interrupted as interrupted:
            display.close()
            if team.writes:
                print(f"interrupted: saved {interrupted.checkpoint} at step {interrupted.step}; "
                      f"continue with: cnnlang train --resume --out {out}{_ranks_option(team.size)}", file=sys.stderr)
            return 130
        except RankFailed:
            display.close()
            if not team.writes:
                return 1  # rank 0 says it, once
            raise
        except TrainingError:
            display.close()
            raise
    display.finish(trainer, time.perf_counter() - started)
    return 0


def _resumed_state(args: argparse.Namespace, out: Path) -> dict:
    from ..train.checkpoint import checkpoint_state
    from ..train.trainer import TrainingError

    if not args.out and not args.model:
        raise UsageError("--resume needs --out DIR (or MODEL, for runs/MODEL)")
    if not (out / CHECKPOINT).is_file():
        raise TrainingError(f"{out / CHECKPOINT}: no checkpoint to resume from")
    return checkpoint_state(out / CHECKPOINT)


def _finished(args: argparse.Namespace, out: Path) -> bool:
    """A finished run resumed without a new --epochs: say so, and train nothing."""
    state = _resumed_state(args, out)
    epochs = TrainConfig.from_json(state["config"]).epochs
    if args.epochs is None and state["progress"]["epoch"] >= epochs:
        print(f"{out}: the run has trained all its {plural(epochs, 'epoch')}; nothing to do "
              "(--resume --epochs N trains on to epoch N)", file=sys.stderr)
        return True
    return False


def _config(args: argparse.Namespace, out: Path, team) -> TrainConfig:
    """The new run's settings, or the resumed run's own (which must have as many ranks)."""
    from ..train.trainer import TrainingError

    ranks = team.size
    if not args.resume:
        config = config_from(args)
        config.ranks = ranks
        return config
    state = _resumed_state(args, out)
    config = TrainConfig.from_json(state["config"])
    if args.data_dir:
        config.data_dir = args.data_dir  # the data may have moved; it does not change the run
    if not args.download:
        config.download = False
    config = config.with_absolute_paths()
    if config.ranks != ranks:
        raise TrainingError(f"{out} was trained on {config.ranks} rank(s); resume it on as many (--ranks {config.ranks}), not {ranks}")
    if args.epochs is not None and args.epochs != config.epochs:
        config, note = config.extended(args.epochs, state["progress"]["epoch"])
        if team.writes:
            print(f"note: {note}", file=sys.stderr)
    return config


def _ranks_option(ranks: int) -> str:
    return f" --ranks {ranks}" if ranks > 1 else ""


class _StopFlag:
    """The first Ctrl-C asks the loop to save and stop after the current step; a second one
    stops at once (the last checkpoint stays as it was). Under MPI the request comes as SIGUSR2,
    which mpiexec forwards to every rank (cnnlang.train.launch sends it on Ctrl-C)."""

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
        handled = [signal.SIGINT] + ([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else [])
        previous = {signum: signal.signal(signum, self._handle) for signum in handled}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
