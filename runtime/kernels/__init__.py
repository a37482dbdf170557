"""Numba kernels on channels-last arrays; each module has a float32 and float64 path."""
