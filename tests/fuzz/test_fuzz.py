"""The hostile-input invariant for check, summary and render: every saved crasher replays clean,
and a fixed-budget fuzzing run (CNNLANG_FUZZ_SECONDS, default 100) finds nothing new."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.harness import CORPUS, Worker, check_input, fuzz, violations


@pytest.fixture(scope="module")
def worker():
    worker = Worker()
    yield worker
    worker.close()


@pytest.mark.parametrize("crasher", sorted(CORPUS.glob("*.cnn")), ids=lambda path: path.stem)
def test_every_saved_crasher_now_meets_the_invariant(crasher: Path, worker, tmp_path):
    assert check_input(worker, crasher.read_bytes(), tmp_path) == {}


def test_the_invariant_catches_what_it_should():
    assert violations(3, "cnnlang: internal error: RecursionError", 0.1, 1000)
    assert violations(1, "f.cnn:1:1: error: x\n\x1b[0m stray\n", 0.1, 1000)
    assert violations(0, "", 6.0, 1000)
    assert violations(0, "", 0.1, 2 * 1024 * 1024)
    assert violations(1, "", 0.1, 1000)
    located = "f.cnn:2:3: error: expected a name\n    2 |  conv(\n      |  ^~~~\nerror: f.cnn: empty\n"
    assert violations(1, located, 0.1, 1000) == []
    assert violations(2, "cnnlang: error: no file or zoo model named 'x'\n", 0.1, 1000) == []


def test_a_worker_spawned_by_a_big_process_is_measured_by_its_own_memory():
    # CI's pytest worker had passed 1 GB when it reached the fuzzer, and every input was reported
    # at its peak; here a parent touches 1.2 GB, then checks the empty file through a worker
    parent = (
        "import sys, tempfile, pathlib; sys.path.insert(0, sys.argv[1])\n"
        "held = b'x' * (1200 * 1024 * 1024)\n"
        "from fuzz.harness import Worker, check_input\n"
        "worker = Worker()\n"
        "print(check_input(worker, b'', pathlib.Path(tempfile.mkdtemp())))\n"
        "worker.close()\n"
    )
    tests = str(Path(__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-c", parent, tests], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"


def test_fuzzing_for_a_fixed_budget_finds_nothing():
    stats = fuzz(float(os.environ.get("CNNLANG_FUZZ_SECONDS", "100")), report=lambda line: None)
    assert stats["inputs"] > 0
    # what each input broke, in the message: a CI log may be all that is left of the run
    assert stats["crashers"] == [], f"saved in {CORPUS}: {stats['problems']}"
