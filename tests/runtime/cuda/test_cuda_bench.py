"""``cnnlang bench --device cuda`` measures on the device and reports which GEMM ran."""

from __future__ import annotations

import cnnlang
from cnnlang.cli.bench import measure

SOURCE = "network tiny { input 2x6x6\n conv(4, 3x3, pad = 1)\n fc(3) }"


def test_bench_on_cuda_reports_the_gemm_calls(cuda_backend):
    result = measure(cnnlang.load(SOURCE), batch=1, train=False, repeat=1, seed=0, dtype="float32", backend=cuda_backend)
    assert result["device"] == "cuda" and result["inference_s"] > 0
    # conv1 and fc1, in the warm-up, the timed run and the per-layer run: 3 calls each
    assert sum(result["gemm_calls"].values()) == 6, result["gemm_calls"]
    assert set(result["gemm_calls"]) <= {"numba", "numba-implicit", "cublas"}
