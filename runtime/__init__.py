"""The CPU runtime, installed as ``cnnlang.runtime``: Numba kernels (``kernels/``), one op per
layer family binding them to IR nodes (``ops/``), the execution plan (``plan.py``), initialisation
(``init.py``), weight files (``weights.py``) and the user-facing :class:`network.Network`.

The compiler and its analyses never import this package, so ``cnnlang check`` stays fast.
"""
