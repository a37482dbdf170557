"""``cnnlang plot RUN``: a PNG of a training run's loss and accuracy curves (matplotlib, an
optional extra: ``pip install 'cnnlang[plot]'``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UsageError
from ..files import write_atomically
from ..train.config import METRICS  # not the trainer: `cnnlang --help` should not load the runtime


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "plot", help="draw a training run's loss and accuracy curves",
        description="Draw the loss and accuracy curves of a run folder written by `cnnlang train` into a PNG.",
    )
    parser.add_argument("run_folder", metavar="RUN", help="a run folder (holding metrics.jsonl) or a metrics.jsonl file")
    parser.add_argument("-o", "--output", metavar="FILE.png", help="default RUN/curves.png")
    parser.add_argument("--force", action="store_true", help="replace an existing image")
    return parser


def read_metrics(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{number}: not a JSON line ({error.msg})") from None
        if not isinstance(record, dict) or "kind" not in record or "step" not in record:
            raise UsageError(f"{path}:{number}: expected a record with 'kind' and 'step', as `cnnlang train` writes")
        records.append(record)
    return records


def run(args: argparse.Namespace) -> int:
    source = Path(args.run_folder)
    metrics = source / METRICS if source.is_dir() else source
    if not metrics.is_file():
        raise UsageError(f"{metrics}: no metrics log (expected a run folder written by `cnnlang train`)")
    output = Path(args.output) if args.output else metrics.parent / "curves.png"
    if output.suffix.lower() != ".png":
        raise UsageError(f"{output}: the plot is written as PNG; name the file *.png")
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists; pass --force to replace it")
    records = read_metrics(metrics)
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    if not epochs and not steps:
        raise UsageError(f"{metrics}: no records yet (the first line is written after --log-every steps)")
    draw(steps, epochs, output, title=metrics.parent.name)
    print(f"wrote {output} ({len(steps)} step and {len(epochs)} epoch records)")
    return 0


def draw(steps: list[dict], epochs: list[dict], output: Path, title: str) -> None:
    figure = curves(steps, epochs, title)
    import matplotlib.pyplot as plt

    try:
        write_atomically(output, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    finally:
        plt.close(figure)


def curves(steps: list[dict], epochs: list[dict], title: str):
    """The figure: loss and accuracy per logged step and per epoch, on axes from epoch 0 to the
    last record (a one-epoch run is a curve across the epoch, not one point on a 0.96-1.04 axis)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("cnnlang plot needs matplotlib: pip install 'cnnlang[plot]' (or pip install matplotlib)") from None
    held = next((k[: -len("_accuracy")] for r in epochs for k in r if k.endswith("_accuracy") and k != "train_accuracy"), None)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(11, 4))
    x_steps = [r["epoch"] - 1 + r["batch"] / r["batches"] for r in steps]
    x_epochs = [r["epoch"] for r in epochs]
    accuracies = []
    if steps:
        loss_axes.plot(x_steps, [r["loss"] for r in steps], lw=0.8, alpha=0.6, label="train (batch)")
        accuracies += [100 * r["train_accuracy"] for r in steps]
        accuracy_axes.plot(x_steps, accuracies, lw=0.8, alpha=0.6, label="train (running, per step)")
    if epochs:
        loss_axes.plot(x_epochs, [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
        accuracy_axes.plot(x_epochs, [100 * r["train_accuracy"] for r in epochs], "o-", label="train (epoch)")
        accuracies += [100 * r["train_accuracy"] for r in epochs]
        if held:
            loss_axes.plot(x_epochs, [r[f"{held}_loss"] for r in epochs], "s-", label=held)
            accuracy_axes.plot(x_epochs, [100 * r[f"{held}_accuracy"] for r in epochs], "s-", label=held)
            accuracies += [100 * r[f"{held}_accuracy"] for r in epochs]
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    loss_axes.set_yscale("log")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    # Accuracy from a little below its lowest value up to 100%, so a short run's few points
    # are not blown up into a range of a few hundredths.
    accuracy_axes.set_ylim(max(0.0, min(accuracies) - 5), 100.5)
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlim(0, max(x_steps + x_epochs))
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure
