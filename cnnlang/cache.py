"""Where cnnlang keeps what it can rebuild: the user's cache directory, never the installed package.

``$CNNLANG_CACHE`` moves it; otherwise it is the platform's per-user cache folder
(``~/.cache/cnnlang`` on Linux, honouring ``XDG_CACHE_HOME``). Files written inside
``site-packages`` outlive an uninstall: Numba's kernel cache there once turned the leftover
``cnnlang/`` folder into a namespace package that hid a later editable install.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import platformdirs


def user_cache_dir() -> Path:
    """``$CNNLANG_CACHE``, else the platform's per-user cache folder for cnnlang."""
    return Path(os.environ.get("CNNLANG_CACHE") or platformdirs.user_cache_dir("cnnlang", appauthor=False))


def kernel_cache_dir(sources: Path) -> Path:
    """Numba's compiled kernels (``$NUMBA_CACHE_DIR`` wins when set): a folder named after a digest of every
    ``.py`` file under ``sources``, the kernels' package. Why: Numba checks a cached kernel
    against its own source file only, and the kernels call intrinsics and inlined functions of other modules
    (llvm_vectors.py, pointwise.py's tiles, winograd_tile.py); after an upgrade that changed only one of those,
    the cache would run the old machine code (seen: a changed winograd_tile.py transform, and winograd.py's
    cached kernel still computed the old one). Each version of the sources compiles into its own folder."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return user_cache_dir() / "kernels" / sources_digest(sources)


def sources_digest(folder: Path) -> str:
    """16 hex digits of a SHA-256 over the relative paths and bytes of the ``.py`` files under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
