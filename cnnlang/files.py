"""Writing files so that a crash never leaves half of one: write a temporary file in the same
folder, then rename it over the target (atomic on POSIX and Windows)."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``; on any failure the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=folder)
    os.close(fd)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def file_system_problem(error: OSError) -> str:
    """One line for an OSError the user can act on: what failed, where, and why."""
    where = f"{error.filename}: " if error.filename else ""
    reason = (error.strerror or str(error)).lower()
    hint = {errno.ENOSPC: "; free some space", errno.EROFS: "; the file system is read-only",
            errno.EACCES: "; check the folder's permissions", errno.EDQUOT: "; the disk quota is used up"}
    return f"{where}{reason}{hint.get(error.errno, '')}"


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    write_atomically(path, lambda temporary: Path(temporary).write_bytes(data))
