"""The LLVM vector code shared by the register tiles of blocked.py, fused_tile.py, pointwise.py and
planar.py: the vector type of a dtype, the intrinsic's arguments as LLVM values, llvm.fma, a
broadcast, accumulators in allocas, and blocked.py's two-level k loop of broadcast FMAs; and the
check of a tile's argument types that their typers share (tile_arguments_fit).

Why: Numba leaves such tiles scalar (its SLP vectoriser is off, its loop vectoriser sees only
innermost loops), so each tile is an ``@intrinsic`` emitting <L x float> FMAs; the four modules
were written side by side and each repeated these pieces. They are plain functions, each emitting
exactly what the copies did, in the same order, so the tiles' IR (and so their results, bit for
bit, and speed) is unchanged.
"""

from __future__ import annotations

from typing import Callable, Sequence

from llvmlite import ir
from numba import types
from numba.core import cgutils, codegen, config

VECTOR_BYTES = 32  # AVX2


def _host_vector_bytes() -> int:
    """64 where Numba compiles for AVX-512 (the host's features, or NUMBA_CPU_FEATURES), else 32."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return 64 if "+avx512f" in features.split(",") else 32


#: AVX-512's vector width where the host has it, else AVX2's: the width of pointwise.py's GEMM tile
#: (smallconv.py's too), stem.py's and blocked_wide.py's weight-gradient tile, whose shapes use the
#: wider vectors well. With AVX2's width pointwise.py's 6 x 2 tile reached half of OpenBLAS's AVX-512
#: sgemm (a 1x1 layer, 2048 -> 512 channels at 7x7, batch 8: 5.1 ms against 2.8 for OpenBLAS's GEMM,
#: Xeon, 2 threads); with AVX-512's it is 6 x 32 float32 outputs in 12 of the 32 registers. The other
#: tiles keep VECTOR_BYTES: their shapes are cut for AVX2 and few channels (16 channels are one
#: AVX-512 vector). Numba's cache is keyed by the CPU's name and features, so a cached kernel is never
#: one compiled for the other width.
HOST_VECTOR_BYTES = _host_vector_bytes()
_INTP = ir.IntType(types.intp.bitwidth)
_I32 = ir.IntType(32)


def tile_arguments_fit(arrays, integers) -> bool:
    """Whether a tile intrinsic's arguments type-check: the arrays 1-D, of one dtype, float32 or
    float64, and the indices and steps integers (the tiles' typers all ask this)."""
    if not all(isinstance(a, types.Array) and a.ndim == 1 for a in arrays):
        return False
    if arrays[0].dtype not in (types.float32, types.float64) or any(a.dtype != arrays[0].dtype for a in arrays):
        return False
    return all(isinstance(i, types.Integer) for i in integers)


def lanes(dtype: types.Float, vector_bytes: int = VECTOR_BYTES) -> int:
    """Elements of the dtype (float32 or float64) per vector."""
    return vector_bytes // (4 if dtype == types.float32 else 8)


def vector_type(context, dtype: types.Float, vector_bytes: int = VECTOR_BYTES) -> tuple[ir.VectorType, int]:
    """<L x float> of the dtype, and the alignment its loads and stores take (the element's: the
    tiles' arrays are only element-aligned)."""
    element = context.get_value_type(dtype)
    return ir.VectorType(element, lanes(dtype, vector_bytes)), (4 if dtype == types.float32 else 8)


def arguments(context, builder, signature, args, indices: Sequence[int]) -> list[ir.Value]:
    """The intrinsic's arguments at ``indices`` as LLVM values: an array's data pointer, an
    integer (or boolean) cast to intp."""
    values = []
    for i in indices:
        ty = signature.args[i]
        if isinstance(ty, types.Array):
            values.append(context.make_array(ty)(context, builder, args[i]).data)
        else:
            values.append(context.cast(builder, args[i], ty, types.intp))
    return values


def const(n: int) -> ir.Constant:
    """n as an intp constant (an index)."""
    return ir.Constant(_INTP, n)


def vector_at(builder, ptr: ir.Value, index: ir.Value, vty: ir.VectorType) -> ir.Value:
    """A <L x float>* to ptr[index]."""
    return builder.bitcast(builder.gep(ptr, [index]), vty.as_pointer())


def zero_vector(vty: ir.VectorType) -> ir.Constant:
    return ir.Constant(vty, [ir.Constant(vty.element, 0.0)] * vty.count)


def fma_function(builder, vty: ir.VectorType) -> ir.Function:
    """llvm.fma on vty (a*b + c, one rounding), declared in the builder's module."""
    bits = 64 if isinstance(vty.element, ir.DoubleType) else 32
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3),
                                          f"llvm.fma.v{vty.count}f{bits}")


def splat(builder, scalar: ir.Value, vty: ir.VectorType) -> ir.Value:
    """scalar in every lane of a vty (insertelement into lane 0, then a shuffle of zeros)."""
    undef = ir.Constant(vty, ir.Undefined)
    zeros = ir.Constant(ir.VectorType(_I32, vty.count), [0] * vty.count)
    return builder.shuffle_vector(builder.insert_element(undef, scalar, ir.Constant(_I32, 0)), undef, zeros)


def prefetch_rows(builder, ptr: ir.Value, start: ir.Value, step: ir.Value, rows: int, width: int,
                  write: bool) -> None:
    """Ask for the cache lines of ptr[start + r*step : ... + width] (r < rows) ahead of their use:
    llvm.prefetch of each row's first and last element (two lines where ``width`` values fill one
    and the row is not aligned to it), into every cache level; for writing, where the target has
    it, as prefetchw."""
    byte = ir.IntType(8).as_pointer()
    signature = ir.FunctionType(ir.VoidType(), [byte, _I32, _I32, _I32])
    function = cgutils.get_or_insert_function(builder.module, signature, "llvm.prefetch.p0")
    for r in range(rows):
        row = builder.add(start, builder.mul(step, const(r)))
        for offset in (0, width - 1):
            address = builder.bitcast(builder.gep(ptr, [builder.add(row, const(offset))]), byte)
            builder.call(function, [address, ir.Constant(_I32, int(write)), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])


def zeroed_accumulators(builder, vty: ir.VectorType, count: int) -> list[ir.Value]:
    """count vty allocas (LLVM promotes them to registers), each set to zero."""
    slots = []
    for _ in range(count):
        slot = cgutils.alloca_once(builder, vty)
        builder.store(zero_vector(vty), slot)
        slots.append(slot)
    return slots


def loaded_accumulators(builder, ptr: ir.Value, start: ir.Value, step: ir.Value, rows: int, vectors: int,
                        vty: ir.VectorType, align: int) -> tuple[list[ir.Value], list[ir.Value]]:
    """rows x vectors vty allocas holding ptr[start + r*step + j*L] (r < rows, vector j), and
    those addresses, for :func:`store_accumulators`."""
    slots, addresses = [], []
    for r in range(rows):
        row = builder.add(start, builder.mul(step, const(r)))
        for j in range(vectors):
            slot = cgutils.alloca_once(builder, vty)
            address = vector_at(builder, ptr, builder.add(row, const(j * vty.count)), vty)
            builder.store(builder.load(address, align=align), slot)
            slots.append(slot)
            addresses.append(address)
    return slots, addresses


def store_accumulators(builder, slots: Sequence[ir.Value], addresses: Sequence[ir.Value], align: int) -> None:
    for slot, address in zip(slots, addresses):
        builder.store(builder.load(slot), address, align=align)


def broadcast_fmas(builder, fma: ir.Function, slots: Sequence[ir.Value], vectors: Sequence[ir.Value],
                   scalar_at: Callable[[int], ir.Value]) -> None:
    """slots[p*NV + j] = fma(splat(*scalar_at(p)), vectors[j], slots[p*NV + j]) for each row p
    and each of the NV vectors, rows in order (scalar_at(p): a pointer to row p's scalar, emitted
    when row p's turn comes)."""
    vty = fma.function_type.return_type
    count = len(vectors)
    for p in range(len(slots) // count):
        broadcast = splat(builder, builder.load(scalar_at(p)), vty)
        for j in range(count):
            slot = slots[p * count + j]
            builder.store(builder.call(fma, [broadcast, vectors[j], builder.load(slot)]), slot)


def tile_sum(builder, slots: Sequence[ir.Value], P: int, pb: ir.Value, b0, bp, bi, bk, pv: ir.Value, v0, vi, vk,
             I, K, vty: ir.VectorType, align: int) -> None:
    """blocked.py's tile sum: slots[p*NV + j] += sum_{i<I, k<K} b[b0 + p*bp + i*bi + k*bk] *
    v[v0 + i*vi + k*vk + j*L : +L], one FMA per term, k in order (NV = len(slots) / P)."""
    fma = fma_function(builder, vty)
    NV = len(slots) // P
    L = vty.count
    with cgutils.for_range(builder, I) as outer:
        vrow = builder.add(v0, builder.mul(outer.index, vi))
        brow = builder.add(b0, builder.mul(outer.index, bi))
        with cgutils.for_range(builder, K) as loop:
            k = loop.index
            vbase = builder.add(vrow, builder.mul(k, vk))
            vs = [builder.load(vector_at(builder, pv, builder.add(vbase, const(j * L)), vty), align=align)
                  for j in range(NV)]
            bbase = builder.add(brow, builder.mul(k, bk))
            broadcast_fmas(builder, fma, slots, vs,
                           lambda p: builder.gep(pb, [builder.add(bbase, builder.mul(bp, const(p)))]))
