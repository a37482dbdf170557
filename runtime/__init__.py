"""Execution kernels (CPU with Numba, GPU with numba.cuda), installed as ``cnnlang.runtime``.

The kernels arrive with the runtime issue; the compiler and its analyses do not depend on them.
"""
