"""Numba kernels on channels-last arrays; each module has a float32 and float64 path."""

import os

from cnnlang.cache import kernel_cache_dir

# Numba's OpenMP workers busy-wait ~300k spins (GNU default) after every parallel region, which
# on a 2-core machine steals a core from the OpenBLAS GEMM that follows: measured 4x slower convs
# (8x64x56x56 3x3: 56 ms instead of 14 ms) and ~20 ms per tiny call. A short spin keeps parallel
# launches cheap (~2 us) without that. libgomp reads this when it is loaded: numba loads it at
# its first parallel launch, so this must run before any parallel kernel has (process-wide; an
# explicit setting wins). Caveat: once torch is imported, numba's pool binds to torch's libgomp
# (loaded RTLD_GLOBAL at torch's import), so the variable must be set before torch is imported.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

# The kernels are `cache=True`; Numba's default is a __pycache__ beside the source, i.e. inside
# site-packages, which survives an uninstall and broke the next editable install. Numba picks the
# cache folder when a kernel is decorated, so it is set here, before any kernel module is
# imported; reload_config covers a numba that was imported before cnnlang (process-wide, like
# NUMBA_CACHE_DIR itself; an explicit setting wins).
os.environ.setdefault("NUMBA_CACHE_DIR", str(kernel_cache_dir()))

from numba.core.config import reload_config  # noqa: E402 - after the variable it reads

reload_config()
