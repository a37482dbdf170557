"""``cnnlang bench --compare``: the references timed beside cnnlang's own numbers, and the lines
that report them (speed ratio = the reference's time / cnnlang's: above 1, cnnlang is faster)."""

from __future__ import annotations

from . import display_name
from .worker import time_in_subprocess


def time_references(references: list[str], model: str, *, input_shape, batch: int, train: bool, repeat: int,
                    seed: int, threads: int, cnnlang_seconds: dict[str, float]) -> dict:
    """{reference: {task: timing with "ratio"}} for task "inference" (and "train" with ``train``;
    ONNX Runtime does not train); ``cnnlang_seconds`` has cnnlang's seconds per task."""
    out: dict = {}
    for reference in references:
        for task in ("inference", "train") if train and reference == "torch" else ("inference",):
            timing = time_in_subprocess(reference, model, input_shape=input_shape, batch=batch, train=task == "train",
                                        repeat=repeat, seed=seed, threads=threads)
            timing["ratio"] = timing["seconds"] / cnnlang_seconds[task]
            out.setdefault(reference, {})[task] = timing
    return out


def reference_lines(references: dict, cnnlang_seconds: dict[str, float]) -> list[str]:
    lines = []
    for reference, tasks in references.items():
        for task, timing in tasks.items():
            layouts = timing.get("layouts", {})
            others = ", ".join(f"{name} {s * 1000:.2f} ms" for name, s in layouts.items() if name != timing.get("best"))
            layout = f" ({timing['best']}; {others})" if layouts else ""
            label = "inference" if task == "inference" else "training step"
            lines.append(
                f"{label:<14} {display_name(reference)} {timing['version']}, {timing['threads']} threads: "
                f"{timing['seconds'] * 1000:.2f} ms{layout}; cnnlang {cnnlang_seconds[task] * 1000:.2f} ms: "
                f"speed ratio cnnlang/{display_name(reference)} {timing['ratio']:.2f}x")
    return lines
