"""Thread settings (cnnlang/environment.py) are applied at the command line's entry, not as a side
effect of ``import cnnlang``; a value the user set wins."""

from __future__ import annotations

import os
import subprocess
import sys

from cnnlang.environment import SETTINGS

PROBE = """
import os, sys
before = {name: os.environ.get(name) for name in NAMES}
import cnnlang, cnnlang.runtime.network
after_import = {name: os.environ.get(name) for name in NAMES}
from cnnlang.cli import main
main(["zoo"])
print(repr((before, after_import, {name: os.environ.get(name) for name in NAMES})), file=sys.stderr)
"""


def probe(env: dict[str, str]) -> tuple[dict, dict, dict]:
    code = f"NAMES = {list(SETTINGS)!r}\n" + PROBE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return eval(done.stderr.strip().splitlines()[-1])  # noqa: S307 - our own repr


def test_import_sets_nothing_and_the_cli_sets_both():
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    before, after_import, after_main = probe(env)
    assert before == after_import == {name: None for name in SETTINGS}
    assert after_main == SETTINGS


def test_a_users_setting_wins():
    env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, "GOMP_SPINCOUNT": "5"}
    _, _, after_main = probe(env)
    assert after_main == {**SETTINGS, "GOMP_SPINCOUNT": "5"}
