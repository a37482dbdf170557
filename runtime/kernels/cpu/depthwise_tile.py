"""The register tile of depthwise.py's 3x3 windows (the forward's and, mirrored, the input
gradient's): P output pixels of one row x V vectors of channels, started from a vector (the
bias, or zeros), the window's taps summed in registers (one FMA per tap and pixel, the tap's
weight vectors loaded once for all P pixels), stored once, through relu where asked.

The taps are a grid whose size and steps are known only at run time, so one tile serves the
pixels whose window crosses the image's edge (their taps outside it left out) and the input
gradient at stride 2 (each input pixel reached by every other tap): every output pixel is written
by a tile, with no pass to set the bias, none for relu and none adding the edges' taps one at a
time (those three took 2.5 of 6.4 ms of the forward of 128 channels at 56x56, batch 8, one thread).

Why a tile: depthwise.py's loops (a whole row's span per tap, or one pixel's channels per call)
load a weight vector for every multiply-add and an output vector per row pass: 128x56x56 at batch
8 ran at about 1.5 multiply-adds per cycle and core. Here each output vector is stored once per
pixel, each weight vector loaded once per P pixels, and the inputs are read from L1.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .llvm_vectors import (HOST_VECTOR_BYTES, arguments, const, fma_function, tile_arguments_fit, vector_at,
                           vector_type, zero_vector)

#: Output pixels per tile: 8 independent FMA chains (enough to cover FMA latency at two per cycle).
PIXELS = 8


def _make_tile(P: int, V: int):
    """tile(x, x0, xp, xa, xb, na, nb, w, w0, wa, wb, b, b0, y, y0, yp, relu): for p < P and
    channels j < V*L (V vectors of L lanes), y[y0 + p*yp + j] = f(b[b0 + j] + sum over the taps
    a < na, b < nb of x[x0 + p*xp + a*xa + b*xb + j] * w[w0 + a*wa + b*wb + j]), taps in order,
    one FMA each, f relu (NaN kept) where ``relu`` is true, on flat contiguous arrays of one float
    dtype (no bounds checks: callers keep within). The taps are a grid of at most 3 x 3 (a whole
    3x3 window unrolled, fewer in loops); the steps may be negative (the input gradient's
    mirrored window). P*V independent sums hide the FMA's latency: V > 1 where a row has few
    pixels left."""

    def codegen(context, builder, signature, args):  # pragma: no cover - compile time
        vty, align = vector_type(context, signature.args[0].dtype, HOST_VECTOR_BYTES)
        L = vty.count
        px, pw, pb, py = arguments(context, builder, signature, args, (0, 7, 11, 13))
        x0, xp, xa, xb, na, nb, w0, wa, wb, b0, y0, yp, relu = arguments(
            context, builder, signature, args, (1, 2, 3, 4, 5, 6, 8, 9, 10, 12, 14, 15, 16))
        fma = fma_function(builder, vty)
        starts = [builder.load(vector_at(builder, pb, builder.add(b0, const(v * L)), vty), align=align)
                  for v in range(V)]
        slots = []
        for _ in range(P):
            for v in range(V):
                slot = cgutils.alloca_once(builder, vty)
                builder.store(starts[v], slot)
                slots.append(slot)

        def add_tap(a, b):
            tap = builder.add(w0, builder.add(builder.mul(wa, a), builder.mul(wb, b)))
            weights = [builder.load(vector_at(builder, pw, builder.add(tap, const(v * L)), vty), align=align)
                       for v in range(V)]
            first = builder.add(x0, builder.add(builder.mul(xa, a), builder.mul(xb, b)))
            for p in range(P):
                pixel = builder.add(first, builder.mul(xp, const(p)))
                for v in range(V):
                    value = builder.load(vector_at(builder, px, builder.add(pixel, const(v * L)), vty), align=align)
                    slot = slots[p * V + v]
                    builder.store(builder.call(fma, [value, weights[v], builder.load(slot)]), slot)

        whole = builder.and_(builder.icmp_signed("==", na, const(3)), builder.icmp_signed("==", nb, const(3)))
        with builder.if_else(whole, likely=True) as (inside, edge):
            with inside:  # the whole window: its 9 taps unrolled
                for a in range(3):
                    for b in range(3):
                        add_tap(const(a), const(b))
            with edge:
                with cgutils.for_range(builder, na) as row:
                    with cgutils.for_range(builder, nb) as column:
                        add_tap(row.index, column.index)
        zero = zero_vector(vty)
        clamp = builder.icmp_signed("!=", relu, const(0))
        for p in range(P):
            for v in range(V):
                value = builder.load(slots[p * V + v])
                # relu: 0 unless value > 0 or NaN (an unordered compare is true for NaN)
                clamped = builder.select(builder.fcmp_unordered(">", value, zero), value, zero)
                address = builder.add(builder.add(y0, builder.mul(yp, const(p))), const(v * L))
                builder.store(builder.select(clamp, clamped, value), vector_at(builder, py, address, vty), align=align)
        return context.get_dummy_value()

    @intrinsic
    def tile(typingctx, x, x0, xp, xa, xb, na, nb, w, w0, wa, wb, b, b0, y, y0, yp, relu):  # pragma: no cover
        integers = (x0, xp, xa, xb, na, nb, w0, wa, wb, b0, y0, yp)
        if not tile_arguments_fit((x, w, b, y), integers) or not isinstance(relu, types.Boolean):
            return None
        return types.none(x, x0, xp, xa, xb, na, nb, w, w0, wa, wb, b, b0, y, y0, yp, relu), codegen

    return tile


#: (pixels, channel vectors) of the tiles depthwise.py's _tiled_span runs.
tile_8x1 = _make_tile(PIXELS, 1)
tile_4x2 = _make_tile(4, 2)
tile_4x1 = _make_tile(4, 1)
tile_1x8 = _make_tile(1, 8)
tile_1x1 = _make_tile(1, 1)
