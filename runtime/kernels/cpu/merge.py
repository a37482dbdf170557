"""Element-wise sums: the residual ``add`` (epilogue.add_activation, with the relu after it
fused) and the training plan's sum of a fanned-out tensor's gradients.

One parallel pass over flat arrays, where NumPy's ``np.add`` runs on one thread and a separate
relu (or, for fan-out, a copy and then an add) costs another pass over memory.
"""

from __future__ import annotations

from numba import njit, prange


@njit(parallel=True, cache=True, error_model="numpy")
def add2(a, b, out, relu):  # pragma: no cover - jitted
    """out = a + b, then max(., 0) with ``relu`` (NaN stays NaN, as relu_forward), on flat
    arrays of one dtype; ``out`` may be ``a`` or ``b``."""
    zero = out.dtype.type(0)
    for i in prange(out.size):
        v = a[i] + b[i]
        if relu and not (v > zero or v != v):
            v = zero
        out[i] = v
