"""cnnlang: a language and graph compiler for convolutional networks."""

import os

# OpenBLAS's idle threads spin for a long time after each GEMM and then compete with the Numba
# kernels that run between GEMMs; a short timeout measured ResNet-18's convolutions at 184 ms
# instead of 218 ms (batch 8, 2 cores). OpenBLAS reads it when NumPy is first imported, so it only
# applies when cnnlang is imported first (always, for the command line); a user's setting wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "16")

from .errors import CnnError, Span
from .model import Model, ModelNotFound, load, zoo_names

__all__ = ["CnnError", "Model", "ModelNotFound", "Span", "load", "zoo_names"]
__version__ = "0.1.0"
