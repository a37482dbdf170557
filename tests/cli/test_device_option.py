"""``--device``: a GPU that cannot be used is one line and exit 2, before anything slow runs.

These run the command without Numba's CUDA simulator (which the test suite otherwise selects:
tests/conftest.py), so they see this machine as it is; on a machine with an NVIDIA GPU they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cnnlang
from cnnlang.runtime.backend import CPU, DeviceError

HAS_GPU = Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()
no_gpu_here = pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU: the no-GPU error cannot happen")


def cnnlang_command(*args: str, cwd: Path, prelude: str = "") -> subprocess.CompletedProcess:
    """``cnnlang ARGS`` in a fresh process without the simulator; ``prelude`` runs first."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    code = f"{prelude}\nimport sys\nfrom cnnlang.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_one_line_usage_error(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("cnnlang: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@no_gpu_here
def test_train_on_cuda_without_a_gpu_is_one_line(tmp_path):
    out = tmp_path / "run"
    result = cnnlang_command("train", "lenet5", "--data", "mnist", "--device", "cuda", "--out", str(out), cwd=tmp_path)
    assert_one_line_usage_error(result, "CUDA GPU", "--device cpu")
    assert not out.exists()  # checked before the run folder, the data or a download


@no_gpu_here
@pytest.mark.parametrize("command", [["run", "lenet5"], ["bench", "lenet5"],
                                     ["eval", "lenet5", "--weights", "w.safetensors", "--data", "mnist"]])
def test_run_bench_eval_on_cuda_without_a_gpu_are_one_line(tmp_path, command):
    assert_one_line_usage_error(cnnlang_command(*command, "--device", "cuda", cwd=tmp_path), "CUDA GPU")


def test_missing_numba_cuda_names_the_extra(tmp_path):
    result = cnnlang_command("run", "lenet5", "--device", "cuda", cwd=tmp_path,
                             prelude="import sys; sys.modules['numba.cuda'] = None  # as if numba-cuda were not installed")
    assert_one_line_usage_error(result, "numba-cuda", "cnnlang[cuda]")


@no_gpu_here
def test_auto_runs_on_the_cpu_without_a_gpu(tmp_path):
    result = cnnlang_command("run", "lenet5", "--device", "auto", "--repeat", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "lenet5 (" in result.stdout and "on cuda" not in result.stdout


def test_build_takes_a_device_or_a_backend():
    model = cnnlang.load("lenet5")
    assert model.build(device="cpu").backend is CPU
    with pytest.raises(ValueError, match="device or backend"):
        model.build(device="cpu", backend="cpu")
    assert issubclass(DeviceError, cnnlang.errors.UsageError)
