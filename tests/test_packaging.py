"""A non-editable install carries the grammar, the zoo and the runtime package."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{result.stderr}")
    return next(out.glob("cnnlang-*.whl"))


def test_wheel_contains_data_and_runtime(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "cnnlang/grammars/cnn.lark" in names
    assert "cnnlang/zoo/resnet50.cnn" in names
    assert "cnnlang/zoo/resnet_blocks.cnn" in names
    assert {"cnnlang/zoo/lecture/moving_average.cnn", "cnnlang/zoo/lecture/sample.png"} <= names
    assert "cnnlang/runtime/__init__.py" in names
    assert not any(name.startswith("runtime/") for name in names), "runtime must not be a top-level module"


def test_installed_wheel_compiles_a_zoo_model(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    code = ("import cnnlang; m = cnnlang.load('resnet50'); "
            "print(cnnlang.__file__); print(m.totals['params'])")
    env = dict(os.environ, PYTHONPATH=str(site))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    location, params = result.stdout.split()
    assert Path(location).is_relative_to(site)
    assert params == "25557032"
