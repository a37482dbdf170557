"""A fuzzing harness for the commands that read a .cnn file: check, summary and render.

Inputs come from two Hypothesis strategies: programs generated from the grammar itself
(``hypothesis.extra.lark.from_lark`` on ``grammars/cnn.lark``, with a vocabulary of real layer
names, sizes and hostile import paths), and byte-level mutations of the zoo files (flips,
insertions, deletions, splices, deep nesting). Hypothesis rather than atheris: it is already a
test dependency, it generates from our own grammar file so the fuzzer cannot drift from the
language, and ``fuzz_one_input`` lets a plain loop drive it for a fixed time; atheris needs a
libFuzzer build and its coverage guidance sees little of a parser that lives in Lark.

Each input runs in a worker process (restarted after a hang or crash) under the invariant: exit
status 0, 1 or 2; no traceback or internal error; every stderr line a located diagnostic
(``file:line:col: error: ...`` with its quote and caret) or an explicit file-level one
(``cnnlang: error: ...``); under 5 s and 1 GB for an input under 64 KB. An input that breaks it is
saved in ``tests/fuzz/corpus/``, which the test suite replays.

Longer runs: ``python tests/fuzz/harness.py --minutes 30`` (nice it on a shared machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
REPO = HERE.parents[1]
ZOO = REPO / "zoo"

TIME_LIMIT_S = 5.0
MEMORY_LIMIT_KB = 1024 * 1024
MAX_INPUT_BYTES = 64 * 1024

COMMANDS = {
    "check": ["check", "{file}"],
    "summary": ["summary", "{file}", "--json"],
    "render": ["render", "{file}", "-o", "{out}", "--force"],
}

_DIAGNOSTIC = re.compile(
    r"^(\S.*:\d+:\d+: (error|warning|note): .*"  # located
    r"|(error|warning|note): .*"  # a diagnostic about the file as a whole
    r"|cnnlang: (error: .*|wrote '.*', drawn up to the error)"  # usage errors, render's epilogue
    r"|\s*\d+ \| .*|\s+\| \s*\^~*)$"  # the quoted line and its caret
)


def violations(rc: int, stderr: str, seconds: float, max_rss_kb: int) -> list[str]:
    """What an invocation did wrong, by the invariant above (empty when nothing)."""
    problems = []
    if rc not in (0, 1, 2):
        problems.append(f"exit status {rc}")
    if "Traceback" in stderr or "internal error" in stderr:
        problems.append("internal error or traceback")
    stray = [line for line in stderr.splitlines() if line and not _DIAGNOSTIC.match(line)]
    if stray:
        problems.append(f"a line that is no diagnostic: {stray[0][:200]!r}")
    if rc != 0 and not stderr.strip():
        problems.append(f"exit status {rc} without a message")
    if seconds > TIME_LIMIT_S:
        problems.append(f"took {seconds:.1f} s")
    if max_rss_kb > MEMORY_LIMIT_KB:
        problems.append(f"peak memory {max_rss_kb / 1024:.0f} MB")
    return problems


# ---- the worker: runs commands in-process, one JSON line per request -----------------------


def _peak_rss_kb() -> int:
    """This process's own peak resident memory. Not ``getrusage``'s ru_maxrss: Linux carries the
    spawning process's peak across exec, so a worker started from a 1 GB pytest process reported
    1 GB before reading any input (CI's fuzz failure, every input a "crasher", the empty one too);
    VmHWM is the high-water mark of the worker's own address space."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker() -> None:
    import contextlib
    import io

    from cnnlang.cli import main

    for line in sys.stdin:
        request = json.loads(line)
        stderr = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(request["argv"])
            except SystemExit as exit_:  # argparse
                rc = exit_.code if isinstance(exit_.code, int) else 2
            except BaseException as error:  # noqa: BLE001 - reported, not hidden
                rc, _ = -1, stderr.write(f"Traceback: {type(error).__name__}: {error}")
        seconds = time.perf_counter() - started
        print(json.dumps({"rc": rc, "stderr": stderr.getvalue(), "seconds": seconds,
                          "max_rss_kb": _peak_rss_kb()}), flush=True)


class Worker:
    """A long-lived worker process (imports once); restarted after a hang, a crash or a
    memory peak, so peak memory is attributed to the input that caused it."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.pop("CNNLANG_DEBUG", None)
        return subprocess.Popen([sys.executable, str(Path(__file__)), "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir())

    def run(self, argv: list[str]) -> list[str]:
        if self.process is None or self.process.poll() is not None:
            self.process = self._start()
        process = self.process
        process.stdin.write(json.dumps({"argv": argv}) + "\n")
        process.stdin.flush()
        reply = _read_line(process, TIME_LIMIT_S * 3)
        if reply is None:
            self.close()
            return [f"no answer within {TIME_LIMIT_S * 3:.0f} s (hang or crash)"]
        result = json.loads(reply)
        problems = violations(result["rc"], result["stderr"], result["seconds"], result["max_rss_kb"])
        if problems or result["max_rss_kb"] > MEMORY_LIMIT_KB // 2:
            self.close()
        return problems

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _read_line(process: subprocess.Popen, timeout: float) -> str | None:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return None
    line = process.stdout.readline()
    return line or None


def check_input(worker: Worker, source: bytes, folder: Path) -> dict[str, list[str]]:
    """Run every command on one input; the problems found, by command."""
    file, out = folder / "input.cnn", folder / "out.dot"
    file.write_bytes(source)
    found = {}
    for name, template in COMMANDS.items():
        argv = [part.format(file=file, out=out) for part in template]
        problems = worker.run(argv)
        if problems:
            found[name] = problems
    return found


def save_crasher(source: bytes, problems: dict[str, list[str]]) -> Path:
    CORPUS.mkdir(exist_ok=True)
    path = CORPUS / f"{hashlib.sha256(source).hexdigest()[:16]}.cnn"
    path.write_bytes(source)
    path.with_suffix(".txt").write_text(json.dumps(problems, indent=2) + "\n", encoding="utf-8")
    return path


# ---- inputs ---------------------------------------------------------------------------------

_LAYERS = ["conv", "conv1d", "maxpool", "avgpool", "relu", "tanh", "sigmoid", "batchnorm", "fc", "dropout",
           "softmax", "flatten", "add", "concat", "lrn", "globalavgpool", "identity"]
_WORDS = ["c", "n", "stride", "pad", "kernel", "filters", "bias", "same", "valid", "b", "blk", "x", "a",
          "input", "auto", "identity", "dilation", "groups", "weights", "momentum", "ceil"]
_PATHS = ["resnet_blocks.cnn", "vgg_blocks.cnn", "input.cnn", "/proc/self/environ", "/bin/sh", "/dev/zero",
          "/tmp", "../..", "a" * 300 + ".cnn", "nothing.cnn", "/proc/self/environ.cnn", "x\u00e9.cnn", ""]


def _keyword(word: str) -> st.SearchStrategy[str]:
    return st.just(f" {word} ")


def _grammar_explicit() -> dict[str, st.SearchStrategy[str]]:
    keywords = {"IMPORT": "import", "FROM": "from", "BLOCK": "block", "NETWORK": "network", "INPUT": "input",
                "OUTPUT": "output", "CONCAT": "concat", "BRANCH": "branch", "RESIDUAL": "residual",
                "SHORTCUT": "shortcut", "REPEAT": "repeat", "TRUE": "true", "FALSE": "false"}
    explicit = {name: _keyword(word) for name, word in keywords.items()}
    big = st.sampled_from(["1000", "99999", "9" * 60, "0", "1e308", "1e999", ".5"])
    small = st.integers(0, 70).map(str)
    explicit.update({
        "NAME": st.sampled_from(_LAYERS + _WORDS) | st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
        "NUMBER": small | small | big,
        "DIMS": st.lists(st.sampled_from(["1", "3", "7", "32", "224", "0", "100000"]), min_size=2, max_size=4).map("x".join),
        "STRING": st.sampled_from(_PATHS).map(lambda p: f'"{p}"'),
        "_SEP": st.sampled_from(["\n", "\n\n", ";", "\n  # note\n"]),
        "_ARROW": st.sampled_from([" -> ", "\n  -> "]),
        "COMMENT": st.just("# c"),
        "__IGNORE_1": st.just(" "),
    })
    return explicit


def grammar_programs() -> st.SearchStrategy[bytes]:
    import lark
    from hypothesis.extra.lark import from_lark

    grammar = lark.Lark((REPO / "grammars" / "cnn.lark").read_text(encoding="utf-8"), parser="lalr", lexer="contextual")
    return from_lark(grammar, start="start", explicit=_grammar_explicit()).map(lambda text: text.encode("utf-8"))


# Fragments a mutation may splice in: deep nesting, huge repetition, odd bytes.
_FRAGMENTS = [b"(" * 300, b")" * 300, b"-" * 400, b"repeat 1000 {\n", b"}\n", b" * 10000", b"\xff\xfe", b"\x00",
              b'import "/proc/self/environ"\n', b"9" * 120, b"[" + b"1," * 500 + b"1]", b"\r", b"\t", b"x",
              b"1e999", b"block q(c) {\n q(c)\n}\n", b"from a, b -> add\n", b"concat {\n branch {\n relu\n }\n}\n"]


@st.composite
def zoo_mutations(draw) -> bytes:
    files = sorted(ZOO.glob("*.cnn"))
    data = bytearray(draw(st.sampled_from(files)).read_bytes())
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "splice", "fragment", "duplicate"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 200))]
        elif kind == "splice":
            other = draw(st.sampled_from(files)).read_bytes()
            start = draw(st.integers(0, len(other)))
            data[at:at] = other[start:start + draw(st.integers(1, 400))]
        elif kind == "fragment":
            data[at:at] = draw(st.sampled_from(_FRAGMENTS)) * draw(st.integers(1, 3))
        elif kind == "duplicate":
            end = min(len(data), at + draw(st.integers(1, 300)))
            data[at:at] = data[at:end] * draw(st.integers(2, 20))
    return bytes(data[:MAX_INPUT_BYTES])


def inputs() -> st.SearchStrategy[bytes]:
    return grammar_programs() | zoo_mutations()


# ---- the fuzzing loop -----------------------------------------------------------------------


def fuzz(seconds: float, report=print) -> dict:
    """Try inputs for ``seconds``; save each one that breaks the invariant in the corpus."""
    worker = Worker()
    stats = {"inputs": 0, "crashers": [], "problems": {}}
    with tempfile.TemporaryDirectory(prefix="cnnlang-fuzz-") as folder:

        @settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))
        @given(inputs())
        def one(source: bytes) -> None:
            stats["inputs"] += 1
            problems = check_input(worker, source, Path(folder))
            if problems:
                saved = save_crasher(source, problems)
                stats["crashers"].append(str(saved))
                stats["problems"][saved.name] = problems
                report(f"crasher {saved.name}: {problems}")

        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds:
                one.hypothesis.fuzz_one_input(os.urandom(4096))
        finally:
            worker.close()
    stats["seconds"] = round(time.monotonic() - started, 1)
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz cnnlang check/summary/render for a fixed time.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker()
        return 0
    stats = fuzz(args.minutes * 60)
    print(json.dumps(stats))
    return 1 if stats["crashers"] else 0


if __name__ == "__main__":
    sys.exit(main())
