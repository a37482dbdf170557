"""Writing files so that a crash never leaves half of one: write a temporary file in the same
folder, then rename it over the target (atomic on POSIX and Windows)."""

from __future__ import annotations

import errno
import glob
import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable


def _temporary_affixes(path: Path) -> tuple[str, str]:
    return f".{path.name}.", path.suffix


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``; on any failure the
    temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    prefix, suffix = _temporary_affixes(path)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    try:
        write(temporary)
        # mkstemp makes the file private (0600), and some writers replace it with their own: the
        # user's file gets the mode a plain open() would give.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete what a killed process left of :func:`write_atomically` writing ``folder/name``
    (only files of exactly that naming); returns what was removed."""
    removed = []
    for name in names:
        prefix, suffix = _temporary_affixes(Path(folder) / name)
        # mkstemp puts 8 characters of [a-z0-9_] between prefix and suffix.
        pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
        for path in Path(folder).glob(f"{glob.escape(prefix)}*"):
            if pattern.fullmatch(path.name) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def file_system_problem(error: OSError, path: str | Path | None = None) -> str:
    """One line for an OSError the user can act on: where (``path``, else the error's file) and why."""
    path = path or error.filename
    where = f"{path}: " if path else ""
    reason = (error.strerror or str(error)).lower()
    hint = {errno.ENOSPC: "; free some space", errno.EROFS: "; the file system is read-only",
            errno.EACCES: "; check the folder's permissions", errno.EDQUOT: "; the disk quota is used up"}
    return f"{where}{reason}{hint.get(error.errno, '')}"


def write_text_atomically(path: str | Path, text: str) -> None:
    write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    write_atomically(path, lambda temporary: Path(temporary).write_bytes(data))
