"""How long `check` takes: parse + lower + analyses (shapes, costs, receptive fields), warm.

    python benchmarks/bench_check.py [MODEL ...]      (default: resnet152 googlenet vgg16)

"Cold" is the first compile in a fresh process (it includes building the LALR parser);
"warm" is the median of repeated compiles after that. Stages are timed separately so a
regression can be pinned on the parser, the lowering or the passes.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlang.loader import load_program  # noqa: E402
from cnnlang.lower import lower  # noqa: E402
from cnnlang.model import resolve  # noqa: E402
from cnnlang.passes import run_pipeline  # noqa: E402


def compile_stages(path: Path) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    program = load_program(path)
    t1 = time.perf_counter()
    graph = lower(program)
    t2 = time.perf_counter()
    run_pipeline(graph)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, graph.number_of_nodes()


def main(models: list[str]) -> None:
    repeats = 30
    print(f"{'model':<12} {'nodes':>6} {'cold ms':>9} {'warm ms':>9} {'parse':>7} {'lower':>7} {'passes':>7}")
    for name in models:
        path = resolve(name)
        cold = sum(compile_stages(path)[:3])
        runs = [compile_stages(path) for _ in range(repeats)]
        totals = [sum(r[:3]) for r in runs]
        parse, low, passes = (statistics.median(r[i] for r in runs) * 1e3 for i in range(3))
        print(f"{name:<12} {runs[0][3]:>6} {cold * 1e3:>9.1f} {statistics.median(totals) * 1e3:>9.1f} "
              f"{parse:>7.1f} {low:>7.1f} {passes:>7.1f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["resnet152", "googlenet", "vgg16"])
