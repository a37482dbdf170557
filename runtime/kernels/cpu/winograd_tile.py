"""Winograd F(2x2, 3x3)'s two per-tile transforms as LLVM vector code, for winograd.py's block-by-block forward
(``_fused_forward``), where a tile's channel loops are one or two vectors long (16 to 64 channels).

Why: written as Numba loops (winograd.py's ``_input_tile``, ``_output_tile``), each transform is 20 short loops, and
each loop pays for LLVM's overlap checks and its remainder code; at 16 channels that is most of a tile's time
(resnet20's 16-channel 32x32 layer, batch 64, two threads: the block-by-block forward took 3.8 ms with those
loops, 2.2x the direct kernel's). Here a tile's 16 inputs of one channel vector are loaded into registers,
transformed and stored, one vector of channels at a time: the same additions in the same order as the loops, so
the results are bitwise theirs.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .llvm_vectors import HOST_VECTOR_BYTES, arguments, const, tile_arguments_fit, vector_at, vector_type, zero_vector

#: Channels must be a whole number of these vectors (bytes) for the tiles here.
VECTOR_BYTES = HOST_VECTOR_BYTES


@intrinsic
def input_tile(typingctx, src, s0, rs, v, q, plane, C):  # pragma: no cover - compile time
    """v[q + (4r + s)*plane + c] = (B^T d B)[r][s] for c < C, d[r][s] = src[s0 + r*rs + s*C + c] (a 4 x 4 patch,
    row stride rs): B^T d rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3), then per row of those
    (a0 - a2, a1 + a2, a2 - a1, a1 - a3). C a whole number of vectors."""
    if not tile_arguments_fit((src, v), (s0, rs, q, plane, C)):
        return None
    sig = types.none(src, s0, rs, v, q, plane, C)

    def codegen(context, builder, signature, args):
        vty, align = vector_type(context, signature.args[0].dtype, VECTOR_BYTES)
        psrc, pv = arguments(context, builder, signature, args, (0, 3))
        s0_, rs_, q_, plane_, C_ = arguments(context, builder, signature, args, (1, 2, 4, 5, 6))
        vectors = builder.sdiv(C_, const(vty.count))
        with cgutils.for_range(builder, vectors) as loop:
            c = builder.mul(loop.index, const(vty.count))

            def load(r, s):
                offset = builder.add(builder.mul(rs_, const(r)), builder.mul(C_, const(s)))
                at = builder.add(builder.add(s0_, c), offset)
                return builder.load(vector_at(builder, psrc, at, vty), align=align)

            d = [[load(r, s) for s in range(4)] for r in range(4)]
            add, sub = builder.fadd, builder.fsub
            rows = [[sub(d[0][s], d[2][s]) for s in range(4)], [add(d[1][s], d[2][s]) for s in range(4)],
                    [sub(d[2][s], d[1][s]) for s in range(4)], [sub(d[1][s], d[3][s]) for s in range(4)]]
            for r, a in enumerate(rows):
                out = (sub(a[0], a[2]), add(a[1], a[2]), sub(a[2], a[1]), sub(a[1], a[3]))
                for s, value in enumerate(out):
                    at = builder.add(builder.add(q_, c), builder.mul(plane_, const(4 * r + s)))
                    builder.store(value, vector_at(builder, pv, at, vty), align=align)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def output_tile(typingctx, m, q, plane, bias, relu, y, y0, ystride, row, O):  # pragma: no cover - compile time
    """The 2 x 2 output pixels of one whole tile: y[y0 + (i*row + j)*ystride + c] = (A^T M A)[i][j] + bias[c]
    (then relu: zero unless positive or NaN) for c < O, M's position k at m[q + k*plane + c]; A^T M's rows
    (m0 + m1 + m2, m1 - m2 - m3), then per row (s0 + s1 + s2 + b, s1 - s2 - s3 + b). O a whole number of vectors;
    ``row``: pixels from the tile's top row to its bottom row."""
    if not tile_arguments_fit((m, bias, y), (q, plane, y0, ystride, row, O)) or not isinstance(relu, types.Boolean):
        return None
    sig = types.none(m, q, plane, bias, relu, y, y0, ystride, row, O)

    def codegen(context, builder, signature, args):
        vty, align = vector_type(context, signature.args[0].dtype, VECTOR_BYTES)
        pm, pbias, py = arguments(context, builder, signature, args, (0, 3, 5))
        q_, plane_, relu_, y0_, ystride_, row_, O_ = arguments(context, builder, signature, args, (1, 2, 4, 6, 7, 8, 9))
        zero = zero_vector(vty)
        is_relu = builder.icmp_signed("!=", relu_, const(0))
        vectors = builder.sdiv(O_, const(vty.count))
        with cgutils.for_range(builder, vectors) as loop:
            c = builder.mul(loop.index, const(vty.count))

            def load(k):
                at = builder.add(builder.add(q_, c), builder.mul(plane_, const(k)))
                return builder.load(vector_at(builder, pm, at, vty), align=align)

            mm = [[load(4 * r + s) for s in range(4)] for r in range(4)]
            add, sub = builder.fadd, builder.fsub
            s0 = [add(add(mm[0][j], mm[1][j]), mm[2][j]) for j in range(4)]
            s1 = [sub(sub(mm[1][j], mm[2][j]), mm[3][j]) for j in range(4)]
            b = builder.load(vector_at(builder, pbias, c, vty), align=align)
            results = {}
            for i, s in enumerate((s0, s1)):
                results[i, 0] = add(add(add(s[0], s[1]), s[2]), b)
                results[i, 1] = add(sub(sub(s[1], s[2]), s[3]), b)
            for (i, j) in ((1, 1), (1, 0), (0, 1), (0, 0)):  # (the loops' store order)
                value = results[i, j]
                clipped = builder.select(builder.fcmp_ordered("<=", value, zero), zero, value)
                value = builder.select(is_relu, clipped, value)
                pixel = builder.add(builder.mul(row_, const(i)), const(j))
                at = builder.add(builder.add(y0_, c), builder.mul(pixel, ystride_))
                builder.store(value, vector_at(builder, py, at, vty), align=align)
        return context.get_dummy_value()

    return sig, codegen
