"""Kernels, one package per backend: ``cpu/`` (Numba, parallel CPU); ``cuda/`` is where numba.cuda
kernels go."""
