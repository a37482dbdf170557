"""The register tile of depthwise.py's 3x3 windows (the forward's and, mirrored, the input
gradient's, at stride 1): P output pixels of one row x one vector of channels, the 9 taps summed
in registers (one FMA per tap and pixel, the tap's weight vector loaded once for all P pixels).

Why: depthwise.py's loops (a whole row's span per tap, with the weight repeated along the row,
or one pixel's channels per call) load a weight vector for every multiply-add and an output
vector per row pass, from L2 at MobileNet's sizes: 128x56x56 at batch 8 ran at about 1.5
multiply-adds per cycle and core, a sixth of what a 48 GB/s streaming pass over the same
tensors allows on the same machine. Here each output vector is loaded and stored once per tile,
each weight vector once per 8 pixels, and the inputs are read from L1: the forward with relu at
batch 8, one thread, CPU time, 128x56x56 8.9-10.7 -> 5.0-5.2 ms, 256x28x28 4.2-4.9 -> 2.1-2.5 ms.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from .llvm_vectors import HOST_VECTOR_BYTES, arguments, const, fma_function, loaded_accumulators, vector_at
from .llvm_vectors import store_accumulators, vector_type

#: Output pixels per tile: 8 independent FMA chains (enough to cover FMA latency at two per cycle).
PIXELS = 8


def _make_tile(P: int):
    """tile(x, x0, xp, xr, xc, w, w0, wr, y, y0, yp): for p < P and lanes j < L,
    y[y0 + p*yp + j] += sum over kh, kw < 3 of x[x0 + p*xp + kh*xr + kw*xc + j] * w[w0 + (kh*3 + kw)*wr + j],
    taps in order, one FMA each, on flat contiguous arrays of one float dtype (no bounds checks:
    callers keep within). The steps may be negative (the input gradient's mirrored window)."""

    def codegen(context, builder, signature, args):  # pragma: no cover - compile time
        vty, align = vector_type(context, signature.args[0].dtype, HOST_VECTOR_BYTES)
        px, pw, py = arguments(context, builder, signature, args, (0, 5, 8))
        x0, xp, xr, xc, w0, wr, y0, yp = arguments(context, builder, signature, args, (1, 2, 3, 4, 6, 7, 9, 10))
        fma = fma_function(builder, vty)
        slots, addresses = loaded_accumulators(builder, py, y0, yp, P, 1, vty, align)
        for kh in range(3):
            for kw in range(3):
                weight = builder.load(vector_at(builder, pw, builder.add(w0, builder.mul(wr, const(kh * 3 + kw))), vty),
                                      align=align)
                tap = builder.add(x0, builder.add(builder.mul(xr, const(kh)), builder.mul(xc, const(kw))))
                for p in range(P):
                    value = builder.load(vector_at(builder, px, builder.add(tap, builder.mul(xp, const(p))), vty),
                                         align=align)
                    builder.store(builder.call(fma, [value, weight, builder.load(slots[p])]), slots[p])
        store_accumulators(builder, slots, addresses, align)
        return context.get_dummy_value()

    @intrinsic
    def tile(typingctx, x, x0, xp, xr, xc, w, w0, wr, y, y0, yp):  # pragma: no cover - compile time
        arrays = (x, w, y)
        if not all(isinstance(a, types.Array) and a.ndim == 1 for a in arrays):
            return None
        if x.dtype not in (types.float32, types.float64) or w.dtype != x.dtype or y.dtype != x.dtype:
            return None
        if not all(isinstance(i, types.Integer) for i in (x0, xp, xr, xc, w0, wr, y0, yp)):
            return None
        return types.none(x, x0, xp, xr, xc, w, w0, wr, y, y0, yp), codegen

    return tile


tile_3x3 = _make_tile(PIXELS)
tile_3x3_4 = _make_tile(4)
tile_3x3_1 = _make_tile(1)
