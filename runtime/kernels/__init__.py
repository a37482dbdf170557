"""Kernels, one package per backend: ``cpu/`` (Numba, parallel CPU); ``cuda/`` is where numba.cuda
kernels go."""

import os

# Numba's OpenMP workers busy-wait ~300k spins (GNU default) after every parallel region, which
# on a 2-core machine steals a core from the OpenBLAS GEMM that follows: measured 4x slower convs
# (8x64x56x56 3x3: 56 ms instead of 14 ms) and ~20 ms per tiny call. A short spin keeps parallel
# launches cheap (~2 us) without that. libgomp reads this when it is loaded: numba loads it at
# its first parallel launch, so this must run before any parallel kernel has (process-wide; an
# explicit setting wins). Caveat: once torch is imported, numba's pool binds to torch's libgomp
# (loaded RTLD_GLOBAL at torch's import), so the variable must be set before torch is imported.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
