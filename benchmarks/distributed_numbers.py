"""The numbers of docs/distributed.md, computed (not measured): gradient bytes each rank sends
per step for every zoo model, ring-allreduce times, and the per-rank batch below which the
Allreduce can no longer hide behind backward.

    python benchmarks/distributed_numbers.py

Ring allreduce of S bytes over N ranks: each rank sends (and receives) 2 (N - 1) / N * S bytes,
in 2 (N - 1) steps; at bandwidth W that is T = 2 (N - 1) / N * S / W, plus 2 (N - 1) link
latencies (left out: microseconds against the milliseconds here). Backward costs about twice
the forward's multiply-adds, 4 * MACs FLOPs per image; at a sustained R FLOP/s a rank's backward
over B images takes 4 * MACs * B / R, and the Allreduce hides behind it (bar the last bucket)
while T < that: B > T * R / (4 * MACs).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnlang  # noqa: E402
from cnnlang.model import zoo_names  # noqa: E402

GBIT = 1e9 / 8  # bytes/s per Gb/s
FLOAT32 = 4


def ring_seconds(nbytes: float, ranks: int, gbit_per_s: float) -> float:
    return 2 * (ranks - 1) / ranks * nbytes / (gbit_per_s * GBIT)


def main() -> None:
    models = {}
    print("| model | trainable parameters | float32 gradient bytes per step | forward MACs per image |")
    print("|---|---:|---:|---:|")
    for name in zoo_names():
        totals = cnnlang.load(name).totals
        models[name] = totals
        print(f"| {name} | {totals['trainable']:,} | {totals['trainable'] * FLOAT32 / 1e6:,.1f} MB | {totals['macs'] / 1e9:.2f} G |")
    print()
    print("| model | ranks | 10 Gb/s | 100 Gb/s |")
    print("|---|---:|---:|---:|")
    for name in ("resnet50", "vgg16"):
        nbytes = models[name]["trainable"] * FLOAT32
        for ranks in (2, 8, 64):
            print(f"| {name} | {ranks} | {1e3 * ring_seconds(nbytes, ranks, 10):,.0f} ms | {1e3 * ring_seconds(nbytes, ranks, 100):,.1f} ms |")
    print()
    print("Smallest per-rank batch whose backward outlasts the Allreduce (8 ranks):")
    print()
    print("| model | link | Allreduce | at 1 TFLOP/s (a CPU socket) | at 100 TFLOP/s (a GPU) |")
    print("|---|---|---:|---:|---:|")
    for name in ("resnet50", "vgg16"):
        nbytes, macs = models[name]["trainable"] * FLOAT32, models[name]["macs"]
        for link in (10, 100):
            t = ring_seconds(nbytes, 8, link)
            cpu, gpu = t * 1e12 / (4 * macs), t * 1e14 / (4 * macs)
            print(f"| {name} | {link} Gb/s | {1e3 * t:,.0f} ms | {cpu:,.1f} images | {gpu:,.0f} images |")


if __name__ == "__main__":
    main()
