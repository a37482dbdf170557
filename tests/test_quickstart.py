"""The README's quick start, run as written: both commands, in order, in one virtual environment.

Numba used to write its kernel cache into ``site-packages/cnnlang/runtime/kernels/__pycache__``;
the editable reinstall left that folder behind as a namespace package that hid the editable
``cnnlang`` (``cannot import name '__version__'``). This builds a real venv, so it is slow
(about a minute and a half on the 2-core machine, mostly pip), and it runs in CI on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PYTEST_SUFFIX = " && .venv/bin/python -m pytest -n auto"


def readme_quick_start() -> tuple[str, str]:
    """The two shell commands of the README's quick start, as written there."""
    section = ROOT.joinpath("README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert len(commands) == 2, f"the quick start should have two commands, found {commands}"
    return commands[0], commands[1]


def copy_source(destination: Path) -> None:
    """The checkout without its venv and build outputs, so pip sees what a fresh clone has."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", ".whl", ".gl")
    shutil.copytree(ROOT, destination, ignore=ignore)


def run_shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command}\nexit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_readme_quick_start_then_editable_install_leaves_a_working_cnnlang(tmp_path):
    first, second = readme_quick_start()
    assert second.endswith(PYTEST_SUFFIX), second
    source = tmp_path / "cnnlang"
    copy_source(source)
    user_cache = tmp_path / "user-cache"
    env = {key: value for key, value in os.environ.items()
           if key not in {"CNNLANG_CACHE", "NUMBA_CACHE_DIR", "VIRTUAL_ENV", "PYTHONPATH"}}
    # pip's cache stays where it was (the wheels CI has just downloaded), though the user's cache
    # folder, where platformdirs puts cnnlang's on Linux, moves to a fresh one.
    env.setdefault("PIP_CACHE_DIR", str(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"))
    env["XDG_CACHE_HOME"] = str(user_cache)

    run_shell(first, source, env)
    # The second command without its last step (the test suite itself), then the CLI again.
    output = run_shell(second.removesuffix(PYTEST_SUFFIX) + " && .venv/bin/cnnlang --version"
                       " && .venv/bin/cnnlang run lenet5", source, env)
    assert output.startswith("cnnlang 0.1.0\n")
    assert "output  1 x 10" in output

    site_packages = next(source.glob(".venv/lib/python*/site-packages"))
    left_in_package = [str(path.relative_to(site_packages)) for path in site_packages.glob("cnnlang/**/*")]
    assert left_in_package == [], "the kernel cache was written inside the installed package"
    assert list(user_cache.glob("cnnlang/**/*.nbi")), "the kernels were not cached in the user's cache directory"
