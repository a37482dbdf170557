"""The register tile of blocked.py with the inference epilogue inside it (bias, a residual
shortcut, relu), for the inference kernels that write their outputs straight from registers
(stem.py's direct conv, gemm_epilogue.py's 1x1 conv).

Why: the tile's accumulators are in registers once the sum is done; adding the bias, the
shortcut and the relu there and storing the result into the output saves the pass over the
output that epilogue.py's kernels make (for a 56x56x256 output at batch 8, 26 MB read and
written again), and the stem's separate write-out loop measured 38.6 against 25.4 ms.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

VECTOR_BYTES = 32  # AVX2


def make_tile(P: int, NV: int, residual: bool = False):
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
        if not all(isinstance(a, types.Array) and a.ndim == 1 for a in arrays):
            return None
        if arrays[0].dtype not in (types.float32, types.float64) or any(a.dtype != arrays[0].dtype for a in arrays):
            return None
        if not all(isinstance(i, types.Integer) for i in ints) or not isinstance(args[5], types.Boolean):
            return None
        return types.none(*args), codegen

    def codegen(context, builder, signature, args):  # pragma: no cover - compile time
        tys = signature.args
        fty = context.get_value_type(tys[0].dtype)
        L = VECTOR_BYTES // (4 if tys[0].dtype == types.float32 else 8)
        align = 4 if tys[0].dtype == types.float32 else 8
        vty = ir.VectorType(fty, L)
        vptr = vty.as_pointer()

        def data(i):
            return context.make_array(tys[i])(context, builder, args[i]).data

        def integer(i):
            return context.cast(builder, args[i], tys[i], types.intp)

        shift = 3 if residual else 0  # (r, r0, rstep) after relu
        py, pbias, pb, pv = data(0), data(3), data(6 + shift), data(11 + shift)
        a0_, astep_, c0_ = integer(1), integer(2), integer(4)
        b0_, bp_, bi_, bk_, v0_, vi_, vk_, I_, K_ = (integer(i + shift) for i in (7, 8, 9, 10, 12, 13, 14, 15, 16))
        if residual:
            pr, r0_, rstep_ = data(6), integer(7), integer(8)
        intp = context.get_value_type(types.intp)

        def const(n):
            return ir.Constant(intp, n)

        def vec_at(ptr, index):
            return builder.bitcast(builder.gep(ptr, [index]), vptr)

        name = f"llvm.fma.v{L}f{32 if align == 4 else 64}"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), name)
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), L), [0] * L)
        undef = ir.Constant(vty, ir.Undefined)
        zero = ir.Constant(vty, [ir.Constant(fty, 0.0)] * L)
        slots = []
        for p in range(P):
            for j in range(NV):
                slot = cgutils.alloca_once(builder, vty)
                builder.store(zero, slot)
                slots.append(slot)
        with cgutils.for_range(builder, I_) as outer:
            vrow = builder.add(v0_, builder.mul(outer.index, vi_))
            brow = builder.add(b0_, builder.mul(outer.index, bi_))
            with cgutils.for_range(builder, K_) as loop:
                k = loop.index
                vbase = builder.add(vrow, builder.mul(k, vk_))
                vs = [builder.load(vec_at(pv, builder.add(vbase, const(j * L))), align=align) for j in range(NV)]
                bbase = builder.add(brow, builder.mul(k, bk_))
                for p in range(P):
                    s = builder.load(builder.gep(pb, [builder.add(bbase, builder.mul(bp_, const(p)))]))
                    splat = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(ir.IntType(32), 0)),
                                                   undef, zeros)
                    for j in range(NV):
                        slot = slots[p * NV + j]
                        builder.store(builder.call(fma, [splat, vs[j], builder.load(slot)]), slot)
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
