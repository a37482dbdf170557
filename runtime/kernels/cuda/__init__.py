"""numba.cuda kernels, one module per family (the CPU's names: conv, dense, pool, norm, activation,
merge), plus ``memory`` (fill, copy, add) and ``gemm``. Imported only through the cuda backend,
so ``import cnnlang`` and CPU runs never load numba.cuda."""
