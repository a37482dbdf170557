"""Kernels, one package per backend: ``cpu/`` (Numba, parallel CPU); ``cuda/`` is where numba.cuda
kernels go."""

import os
from pathlib import Path

from cnnlang.cache import kernel_cache_dir

# The kernels are `cache=True`; Numba's default is a __pycache__ beside the source, i.e. inside
# site-packages, which survives an uninstall and broke the next editable install. Numba picks the
# cache folder when a kernel is decorated, so it is set here, before any kernel module is
# imported; reload_config covers a numba that was imported before cnnlang (process-wide, like
# NUMBA_CACHE_DIR itself; an explicit setting wins).
# The folder is named after a digest of this package's sources (see kernel_cache_dir).
os.environ.setdefault("NUMBA_CACHE_DIR", str(kernel_cache_dir(Path(__file__).parent)))

from numba.core.config import reload_config  # noqa: E402 - after the variable it reads

reload_config()
