"""The register tile of blocked.py with the inference epilogue inside it (bias, a residual
shortcut, relu), for the inference kernels that write their outputs straight from registers
(stem.py's direct conv; the GEMMs run pointwise.py's tile, whose epilogue has the same options).

Why: the tile's accumulators are in registers once the sum is done; adding the bias, the
shortcut and the relu there and storing the result into the output saves the pass over the
output that epilogue.py's kernels make (for a 56x56x256 output at batch 8, 26 MB read and
written again), and the stem's separate write-out loop measured 38.6 against 25.4 ms.
"""

from __future__ import annotations

from numba import types
from numba.extending import intrinsic

from .llvm_vectors import (VECTOR_BYTES, arguments, const, tile_arguments_fit, tile_sum, vector_at, vector_type,
                           zero_vector, zeroed_accumulators)


def make_tile(P: int, NV: int, residual: bool = False, vector_bytes: int = VECTOR_BYTES):
    """blocked.py's (P, NV) register tile with the epilogue inside:
    tile(y, a0, astep, bias, c0, relu, [r, r0, rstep,] b, b0, bp, bi, bk, v, v0, vi, vk, I, K) does,
    for p < P and j < NV*L, y[a0 + p*astep + j] = f(s + bias[c0 + j] [+ r[r0 + p*rstep + j]]) with
    s = sum_{i<I, k<K} b[b0 + p*bp + i*bi + k*bk] * v[v0 + i*vi + k*vk + j], f relu (NaN passes)
    when ``relu`` else the identity; the residual r (a shortcut) only with ``residual``. The sum
    as blocked.py's tile computes it (one FMA per term, k in order), then the bias, then the
    residual, in the order of the GEMM path's epilogues (epilogue.py). Flat contiguous arrays of
    one float dtype, no bounds checks: callers keep within."""

    array_at = (0, 3, 6, 9, 14) if residual else (0, 3, 6, 11)

    def typer(args):  # pragma: no cover - compile time
        arrays = [args[i] for i in array_at]
        ints = [a for i, a in enumerate(args) if i != 5 and i not in array_at]
        if not tile_arguments_fit(arrays, ints) or not isinstance(args[5], types.Boolean):
            return None
        return types.none(*args), codegen

    def codegen(context, builder, signature, args):  # pragma: no cover - compile time
        tys = signature.args
        vty, align = vector_type(context, tys[0].dtype, vector_bytes)
        L = vty.count

        shift = 3 if residual else 0  # (r, r0, rstep) after relu
        py, pbias, pb, pv = arguments(context, builder, signature, args, (0, 3, 6 + shift, 11 + shift))
        a0_, astep_, c0_ = arguments(context, builder, signature, args, (1, 2, 4))
        b0_, bp_, bi_, bk_, v0_, vi_, vk_, I_, K_ = arguments(context, builder, signature, args,
                                                              [i + shift for i in (7, 8, 9, 10, 12, 13, 14, 15, 16)])
        if residual:
            pr, r0_, rstep_ = arguments(context, builder, signature, args, (6, 7, 8))

        def vec_at(ptr, index):
            return vector_at(builder, ptr, index, vty)

        zero = zero_vector(vty)
        slots = zeroed_accumulators(builder, vty, P * NV)
        tile_sum(builder, slots, P, pb, b0_, bp_, bi_, bk_, pv, v0_, vi_, vk_, I_, K_, vty, align)
        biases = [builder.load(vec_at(pbias, builder.add(c0_, const(j * L))), align=align) for j in range(NV)]
        relu_ = context.cast(builder, args[5], tys[5], types.boolean)
        for p in range(P):
            row = builder.add(a0_, builder.mul(astep_, const(p)))
            rrow = builder.add(r0_, builder.mul(rstep_, const(p))) if residual else None
            for j in range(NV):
                value = builder.fadd(builder.load(slots[p * NV + j]), biases[j])
                if residual:
                    value = builder.fadd(value, builder.load(vec_at(pr, builder.add(rrow, const(j * L))), align=align))
                # relu as relu_forward: v if (v > 0 or v is NaN) else 0 ("ugt": unordered or greater)
                rectified = builder.select(builder.fcmp_unordered(">", value, zero), value, zero)
                value = builder.select(relu_, rectified, value)
                builder.store(value, vec_at(py, builder.add(row, const(j * L))), align=align)
        return context.get_dummy_value()

    # (Two explicit signatures: Numba's intrinsics take no *args.)
    if residual:

        @intrinsic
        def tile(typingctx, y, a0, astep, bias, c0, relu, r, r0, rstep, b, b0, bp, bi, bk, v, v0, vi, vk, I,
                 K):  # pragma: no cover - compile time
            return typer((y, a0, astep, bias, c0, relu, r, r0, rstep, b, b0, bp, bi, bk, v, v0, vi, vk, I, K))
    else:

        @intrinsic
        def tile(typingctx, y, a0, astep, bias, c0, relu, b, b0, bp, bi, bk, v, v0, vi, vk, I, K):  # pragma: no cover
            return typer((y, a0, astep, bias, c0, relu, b, b0, bp, bi, bk, v, v0, vi, vk, I, K))

    return tile
