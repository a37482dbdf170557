"""numba.cuda kernels, one module per family (the CPU kernels' families and names)."""
