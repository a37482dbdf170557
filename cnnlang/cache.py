"""Where cnnlang keeps what it can rebuild: the user's cache directory, never the installed package.

``$CNNLANG_CACHE`` moves it; otherwise it is the platform's per-user cache folder
(``~/.cache/cnnlang`` on Linux, honouring ``XDG_CACHE_HOME``). Files written inside
``site-packages`` outlive an uninstall: Numba's kernel cache there once turned the leftover
``cnnlang/`` folder into a namespace package that hid a later editable install.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def user_cache_dir() -> Path:
    """``$CNNLANG_CACHE``, else the platform's per-user cache folder for cnnlang."""
    return Path(os.environ.get("CNNLANG_CACHE") or platformdirs.user_cache_dir("cnnlang", appauthor=False))


def kernel_cache_dir() -> Path:
    """Numba's compiled kernels (``$NUMBA_CACHE_DIR`` wins when set)."""
    return Path(os.environ.get("NUMBA_CACHE_DIR") or user_cache_dir() / "kernels")
