"""Wall-clock medians, and the machine's GEMM rate that per-layer GFLOP/s are read against."""

from __future__ import annotations

import statistics
import time

import numpy as np


def median_seconds(call, repeat: int, warmup: int = 0, at_least_s: float = 0.0) -> float:
    """The median wall time of ``repeat`` calls, after ``warmup`` untimed ones; more calls while
    the timed ones add up to less than ``at_least_s`` seconds."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    while len(times) < repeat or sum(times) < at_least_s:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_medians(calls: list, repeat: int) -> list[float]:
    """The median wall time of each of ``calls`` over ``repeat`` rounds in which they take turns
    (the order reversed every other round), so that a slow spell of a shared machine falls on
    all of them rather than on one."""
    times: list[list[float]] = [[] for _ in calls]
    for turn in range(repeat):
        order = range(len(calls)) if turn % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            start = time.perf_counter()
            calls[i]()
            times[i].append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def gemm_gflops(dtype: str = "float32", n: int = 2048, repeat: int = 3) -> float:
    """GFLOP/s of an ``n`` x ``n`` x ``n`` NumPy matmul (the BLAS cnnlang's convolutions call,
    on as many threads): the median of ``repeat`` after one warm-up."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    out = np.empty((n, n), dtype)
    seconds = median_seconds(lambda: np.matmul(a, b, out=out), repeat, warmup=1)
    return 2 * n**3 / seconds / 1e9
