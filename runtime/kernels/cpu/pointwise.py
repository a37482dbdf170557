"""A GEMM with the inference epilogue fused, in Numba's thread pool: the one register-tile GEMM of
optimised inference. It runs 1x1 convs (GoogLeNet's inception branches, here with few output
channels; ResNet's bottleneck 1x1s through gemm_epilogue.py), convs on im2col's columns
(gemm_epilogue.py), classifier fc layers (ops/dense.py), and Winograd's 16 GEMMs (winograd.py);
the epilogue options are a bias, relu, a residual shortcut, and an output whose rows are strided
(a concat slice). In training it runs the GEMMs of 1x1 convs (forward and input gradient) and the
forward's on im2col's columns (conv.py's ``_tile_gemm``).

Why: at N = 16-128 output channels OpenBLAS's sgemm runs below its peak, the bias + relu epilogue
is a second pass over the output, and handing the work between Numba's pool (the epilogue, the
layers around) and OpenBLAS's costs as much as the work at these sizes, more when another process
holds a core. Here each thread computes ROWS x 2L outputs at a time in registers, adds the bias,
applies relu and stores the rows straight into the output, whose rows may be strided (a channel
slice of a concat buffer).

The tile (:func:`_make_gemm_tile`) is an ``@intrinsic`` emitting LLVM vector FMAs, like
blocked.py's, but specialised for a GEMM: unit step along k for A and a packed B, so its k loop
is unrolled (UNROLL) with constant offsets, the accumulators start at zero in registers, and the
epilogue runs on the registers; before the k loop the tile prefetches the output lines it will
store and the shortcut lines it will add (ResNet-50's 56x56 1x1 with a residual 1.26-1.31x).
blocked.py's general tile (runtime strides, accumulators loaded
from and stored to memory, one k per iteration: ~29 instructions per 12 FMAs, the front end's
limit) measured 53-63 GFLOP/s on one core against OpenBLAS's 85 at 2048^3.

B (the weight, N x K) is packed once per weight change into panels of 2L columns: (N/2L, K, 2L),
zero-padded (a last panel at most half full is L wide and runs a ROWS x 1 tile), so that the tile
reads one contiguous stream of it (:func:`pack_panels`). Each thread takes a contiguous range of
ROWS-row blocks of A and runs ``group`` of them per panel before the next panel (GROUP here; 1,
every panel per block, for gemm_epilogue.py's larger K), or with very few rows (a classifier's
batch) a range of the panels. The same kernel runs a
stack of GEMMs (Winograd's 16, winograd.py) in one parallel region, and smallconv.py's direct
conv uses the tile with a second k level (kernel rows).

Measured (GoogLeNet b8 shapes, one thread, CPU time, against BLAS sgemm + the epilogue pass in the
same process): 1x1 layers 1.04-1.55x (N = 16-256; about even at 384); Winograd's stacked GEMMs
0.98-1.14x. Two threads on a loaded machine gain far more (no hand-off to BLAS's pool).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from ...host_arrays import host_empty
from .epilogue import row_span
from .llvm_vectors import HOST_VECTOR_BYTES as _VECTOR_BYTES
from .llvm_vectors import (arguments, broadcast_fmas, const, fma_function, prefetch_rows, vector_at, vector_type,
                           zero_vector, zeroed_accumulators)

#: Rows of A per block of work. The tiles are 6 x 2 vectors (12 accumulators, 2 weight vectors, 1
#: broadcast of AVX2's 16 registers), in AVX-512's width where the host has it
#: (llvm_vectors.HOST_VECTOR_BYTES); there a block is 12 rows, two such tiles, so that a half panel
#: (N = 16 float32 outputs: one vector) runs a 12 x 1 tile, 12 accumulators rather than 6: GoogLeNet's
#: 1x1s to 16 outputs, batch 8, 2 threads, AVX-512 Xeon, alternating processes, 192x28x28 0.424 ->
#: 0.326 ms, 480x14x14 0.222 -> 0.194; 12 x 2 tiles for whole panels measured 0.84-0.91x at K = 64-256.
ROWS = 12 if _VECTOR_BYTES == 64 else 6
#: k steps per iteration of the tile's loop.
UNROLL = 4
#: Row blocks that run one weight panel before the next panel (so a panel is read from memory once
#: per GROUP blocks, not once per block): 48 rows of A either way.
GROUP = 48 // ROWS


def _make_gemm_tile(P: int, NV: int, residual: bool = False):
    """tile(a, a0, lda, ai, I, v, v0, K, bias, n0, relu, [r, r0, ldr,] y, y0, ldy): for p < P, j < NV*L,
    y[y0 + p*ldy + j] = f(sum_{i<I, k<K} a[a0 + p*lda + i*ai + k] * v[v0 + (i*K + k)*NV*L + j] + bias[n0 + j]
    [+ r[r0 + p*ldr + j]]), f relu (relu != 0; NaN passes) or the identity, on flat contiguous arrays of one
    float dtype (no bounds checks: callers keep within). I > 1: a window's kernel rows, each a contiguous
    run of K = KW*C inputs (smallconv.py); a GEMM has I = 1. With ``residual`` the shortcut r is added
    after the bias, before relu (the order of epilogue.py's bias_residual_activation)."""

    def typer(args):  # pragma: no cover - compile time
        array_at = (0, 5, 8, 11, 14) if residual else (0, 5, 8, 11)
        arrays = [args[i] for i in array_at]
        if not all(isinstance(x, types.Array) and x.ndim == 1 for x in arrays):
            return None
        if arrays[0].dtype not in (types.float32, types.float64) or any(x.dtype != arrays[0].dtype for x in arrays):
            return None
        if not all(isinstance(x, (types.Integer, types.Boolean)) for i, x in enumerate(args) if i not in array_at):
            return None
        return types.none(*args), codegen

    def codegen(context, builder, signature, args):  # pragma: no cover - compile time
        vty, align = vector_type(context, signature.args[0].dtype, _VECTOR_BYTES)
        L = vty.count
        W = NV * L
        shift = 3 if residual else 0  # (r, r0, ldr) after relu
        pa, pv, pbias, py = arguments(context, builder, signature, args, (0, 5, 8, 11 + shift))
        a0_, lda_, ai_, I_, v0_, K_, n0_, relu_, y0_, ldy_ = arguments(
            context, builder, signature, args, (1, 2, 3, 4, 6, 7, 9, 10, 12 + shift, 13 + shift))
        if residual:
            pr, r0_, ldr_ = arguments(context, builder, signature, args, (11, 12, 13))
        fma = fma_function(builder, vty)
        zero = zero_vector(vty)
        slots = zeroed_accumulators(builder, vty, P * NV)
        # The lines the epilogue will read (the shortcut) and write are asked for now, so that they
        # arrive during the k loop: a row's 2L outputs span two lines unless 64-byte aligned.
        if residual:
            prefetch_rows(builder, pr, r0_, ldr_, P, W, write=False)
        prefetch_rows(builder, py, y0_, ldy_, P, W, write=True)

        def step(rows, panel, k):
            vbase = builder.gep(panel, [builder.mul(k, const(W))])
            vs = [builder.load(vector_at(builder, vbase, const(j * L), vty), align=align) for j in range(NV)]
            broadcast_fmas(builder, fma, slots, vs, lambda p: builder.gep(rows[p], [k]))

        blocks = builder.sdiv(K_, const(UNROLL))
        with cgutils.for_range(builder, I_) as outer:
            start = builder.add(a0_, builder.mul(outer.index, ai_))
            rows = [builder.gep(pa, [builder.add(start, builder.mul(lda_, const(p)))]) for p in range(P)]
            panel = builder.gep(pv, [builder.add(v0_, builder.mul(builder.mul(outer.index, K_), const(W)))])
            with cgutils.for_range(builder, blocks) as loop:
                k0 = builder.mul(loop.index, const(UNROLL))
                for u in range(UNROLL):
                    step(rows, panel, builder.add(k0, const(u)))
            with cgutils.for_range_slice(builder, builder.mul(blocks, const(UNROLL)), K_, const(1)) as (k, _):
                step(rows, panel, k)
        is_relu = builder.icmp_signed("!=", relu_, const(0))
        biases = [builder.load(vector_at(builder, pbias, builder.add(n0_, const(j * L)), vty), align=align)
                  for j in range(NV)]
        # row by row: each row's 2L outputs (one 64-byte line in float32) are stored together
        for p in range(P):
            for j in range(NV):
                value = builder.fadd(builder.load(slots[p * NV + j]), biases[j])
                if residual:
                    at = builder.add(r0_, builder.add(builder.mul(ldr_, const(p)), const(j * L)))
                    value = builder.fadd(value, builder.load(vector_at(builder, pr, at, vty), align=align))
                # relu as relu_forward: zero unless v > 0 or v is NaN (ordered v <= 0)
                clipped = builder.select(builder.fcmp_ordered("<=", value, zero), zero, value)
                value = builder.select(is_relu, clipped, value)
                offset = builder.add(y0_, builder.add(builder.mul(ldy_, const(p)), const(j * L)))
                builder.store(value, vector_at(builder, py, offset, vty), align=align)
        return context.get_dummy_value()

    # (Two explicit signatures: Numba's intrinsics take no *args.)
    if residual:

        @intrinsic
        def tile(typingctx, a, a0, lda, ai, I, v, v0, K, bias, n0, relu, r, r0, ldr, y, y0,
                 ldy):  # pragma: no cover - compile time
            return typer((a, a0, lda, ai, I, v, v0, K, bias, n0, relu, r, r0, ldr, y, y0, ldy))
    else:

        @intrinsic
        def tile(typingctx, a, a0, lda, ai, I, v, v0, K, bias, n0, relu, y, y0, ldy):  # pragma: no cover
            return typer((a, a0, lda, ai, I, v, v0, K, bias, n0, relu, y, y0, ldy))

    return tile


_tile_6x2 = _make_gemm_tile(6, 2)
_tile_1x2 = _make_gemm_tile(1, 2)
_tile_6x1 = _make_gemm_tile(6, 1)
_tile_rows_x1 = _tile_6x1 if ROWS == 6 else _make_gemm_tile(ROWS, 1)
_tile_1x1 = _make_gemm_tile(1, 1)
_tile_6x2_residual = _make_gemm_tile(6, 2, residual=True)


def panel_width(dtype: np.dtype) -> int:
    """Columns per packed panel: two vectors."""
    return 2 * _VECTOR_BYTES // np.dtype(dtype).itemsize


def thread_scratch(workspace, dtype: np.dtype) -> np.ndarray:
    """The part-tile scratch of :func:`pointwise_forward` and :func:`stacked_gemm` for this call's
    thread count, flat: a ConvWorkspace's "pointwise" buffer, which a plan's convs share."""
    return workspace.get("pointwise", numba.get_num_threads() * ROWS * panel_width(dtype), np.dtype(dtype))


def panels_size(n: int, k: int, dtype: np.dtype) -> int:
    """Elements of :func:`pack_panels` of an (n, k) weight."""
    width = panel_width(dtype)
    full, rest = divmod(n, width)
    return (full * width + (0 if not rest else width // 2 if rest <= width // 2 else width)) * k


def pack_panels_into(matrix: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`pack_panels` of the (N, K) ``matrix`` (any strides: a transposed view will do) into
    ``out`` (at least panels_size elements of its dtype; training packs every step): the panels,
    a view of out."""
    n, k = matrix.shape
    width = panel_width(matrix.dtype)
    full, rest = divmod(n, width)
    packed = out[: panels_size(n, k, matrix.dtype)]
    whole = packed[: full * width * k].reshape(full, k, width)
    np.copyto(whole, matrix[: full * width].reshape(full, width, k).transpose(0, 2, 1))
    if rest:
        last = packed[full * width * k :].reshape(k, -1)
        last[:] = 0
        last[:, :rest] = matrix[full * width :].T
    return packed


def pack_panels(weight: np.ndarray) -> np.ndarray:
    """The (N, K) weight (1x1 conv: (O, C, 1, 1)) as panels (ceil(N / 2L), K, 2L), flat, zero
    past N; when the last panel would be at most half full (N = 24 in float32), it is (K, L)."""
    n = weight.shape[0]
    matrix = weight.reshape(n, -1)
    return pack_panels_into(matrix, host_empty(panels_size(n, matrix.shape[1], weight.dtype), weight.dtype))


def padded_bias(bias: np.ndarray | None, n: int, dtype: np.dtype) -> np.ndarray:
    """The bias (zeros when None) padded to whole panels, as the tile reads it."""
    return padded_bias_into(bias, n, host_empty(-(-n // panel_width(dtype)) * panel_width(dtype), dtype))


def padded_bias_into(bias: np.ndarray | None, n: int, out: np.ndarray) -> np.ndarray:
    """:func:`padded_bias` into ``out`` (at least that many elements of its dtype; training pads
    every step): a view of out."""
    width = panel_width(out.dtype)
    padded = out[: -(-n // width) * width]
    padded[:] = 0
    if bias is not None:
        padded[:n] = bias
    return padded


@njit(inline="always", _nrt=False)
def whole_block(a, a0, lda, panels, v0, K, bias, n0, relu, r, r0, ldr, residual, y, y0,
                ldy):  # pragma: no cover - compiled
    """A whole block of ROWS rows x one whole panel, straight into y: ROWS / 6 tiles of 6 x 2 vectors."""
    for h in range(0, ROWS, 6):
        if residual:
            _tile_6x2_residual(a, a0 + h * lda, lda, 0, 1, panels, v0, K, bias, n0, relu, r, r0 + h * ldr, ldr, y,
                               y0 + h * ldy, ldy)
        else:
            _tile_6x2(a, a0 + h * lda, lda, 0, 1, panels, v0, K, bias, n0, relu, y, y0 + h * ldy, ldy)


@njit(inline="always", _nrt=False)
def gemm_task(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K, MB, M, task, nb,
              part):  # pragma: no cover - compiled
    """fused_gemm's tile of row block ``task`` (plane and ROWS-row block) and panel ``nb``."""
    L = _VECTOR_BYTES // a.itemsize
    VO = 2 * L
    n0 = nb * VO
    cols = min(VO, N - n0)
    q = task // MB if aplane else 0  # (a division per tile costs at K = 64; one plane needs none)
    m0 = (task - q * MB) * ROWS
    rows = min(ROWS, M - m0)
    v0 = q * pplane + nb * K * VO
    a0 = q * aplane + m0 * lda
    y0 = q * yplane + m0 * ldy + n0
    if rows == ROWS and cols == VO:
        whole_block(a, a0, lda, panels, v0, K, bias, n0, relu, r, m0 * ldr + n0, ldr, residual, y, y0, ldy)
    elif rows == ROWS and cols == L and not residual:  # a half panel (pack_panels): one vector wide
        _tile_rows_x1(a, a0, lda, 0, 1, panels, v0, K, bias, n0, relu, y, y0, ldy)
    else:
        part_block(a, a0, lda, panels, v0, K, bias, n0, relu, r, ldr, residual, y, y0, ldy, m0, rows, cols, part)


@njit(cache=True, _nrt=False)
def _task_call(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K, MB, M, task, nb,
               part):  # pragma: no cover - compiled
    """gemm_task as a call, for fused_gemm's rarer paths (a few rows, the edges of the group-1 order): each
    inlined copy of gemm_task's tiles is LLVM work (fused_gemm took 27 s to compile with three of them)."""
    gemm_task(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K, MB, M, task, nb, part)


@njit(cache=True, _nrt=False)
def part_block(a, a0, lda, panels, v0, K, bias, n0, relu, r, ldr, residual, y, y0, ldy, m0, rows, cols,
               part):  # pragma: no cover - compiled
    """A part tile (the last rows, the last columns when N is not a whole number of panels): into ``part``
    (row p at p*width), finished (residual, relu) as it is copied out. A call, not inlined: it is rare."""
    L = _VECTOR_BYTES // a.itemsize
    VO = 2 * L
    width = L if cols <= L else VO
    tile_relu = relu and not residual  # (with a residual, relu comes after it)
    done = 0
    if rows == ROWS and width == L:
        _tile_rows_x1(a, a0, lda, 0, 1, panels, v0, K, bias, n0, tile_relu, part, 0, L)
        done = rows
    while rows - done >= 6:  # 6 rows at a time, then the last ones one by one
        if width == L:
            _tile_6x1(a, a0 + done * lda, lda, 0, 1, panels, v0, K, bias, n0, tile_relu, part, done * L, L)
        else:
            _tile_6x2(a, a0 + done * lda, lda, 0, 1, panels, v0, K, bias, n0, tile_relu, part, done * VO, VO)
        done += 6
    for p in range(done, rows):
        if width == L:
            _tile_1x1(a, a0 + p * lda, lda, 0, 1, panels, v0, K, bias, n0, tile_relu, part, p * L, 0)
        else:
            _tile_1x2(a, a0 + p * lda, lda, 0, 1, panels, v0, K, bias, n0, tile_relu, part, p * VO, 0)
    for p in range(rows):
        for j in range(cols):
            value = part[p * width + j]
            if residual:
                value += r[(m0 + p) * ldr + n0 + j]
                if relu and value <= 0:  # (False for NaN, which passes, as relu_forward)
                    value = 0
            y[y0 + p * ldy + j] = value


@njit(parallel=True, cache=True, _nrt=False)
def fused_gemm(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, planes, M, N, K, group,
               scratch):  # pragma: no cover - compiled
    """For each of ``planes`` GEMMs q (a stack, as Winograd's 16; 1 for a plain GEMM):
    y[q*yplane + m*ldy + n] = f(sum_k a[q*aplane + m*lda + k] * B_q[k, n] + bias[n] (+ r[m*ldr + n]))
    for m < M, n < N, f relu (relu true; NaN passes, as relu_forward) or the identity, the shortcut r
    only with ``residual`` (one plane); y's rows may be strided (flat: a contiguous span over them,
    what epilogue.row_span gives). panels: B_q as pack_panels of B_q^T at q*pplane; bias:
    padded_bias. aplane must be nonzero when planes > 1. scratch: T x (ROWS * 2L), where each
    thread's part tiles (the last rows, the last columns when N is not a whole number of panels)
    land before they are finished and copied. The (plane, ROWS-row block) tasks are split in
    contiguous ranges over its T rows; each thread runs ``group`` of them per weight panel before
    the next panel; group 1 runs every panel per row block in turn, so that the block's rows stay
    in L1 while the weight streams from L2. With fewer than 2T tasks (a classifier at batch 8: 2
    row blocks, 1 of them 2 rows) the panels are split over the threads instead, each running
    every row block on its panels, so that the weight is read from memory once, in equal halves."""
    VO = 2 * _VECTOR_BYTES // a.itemsize
    NB = (N + VO - 1) // VO
    whole = N // VO
    MB = (M + ROWS - 1) // ROWS
    tasks = planes * MB
    T = scratch.shape[0]
    by_panels = tasks < 2 * T and NB >= T  # few rows (a classifier's batch): share the panels instead
    for t in prange(T):
        part = scratch[t]
        if by_panels:
            for nb in range(t * NB // T, (t + 1) * NB // T):
                for task in range(tasks):
                    _task_call(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K, MB,
                               M, task, nb, part)
            continue
        lo, hi = t * tasks // T, (t + 1) * tasks // T
        if group == 1:
            for task in range(lo, hi):
                q = task // MB if aplane else 0
                m0 = (task - q * MB) * ROWS
                a0 = q * aplane + m0 * lda
                y0 = q * yplane + m0 * ldy
                for nb in range(NB):
                    # whole tiles inline, with the task's offsets from outside the panel loop (at K = 64 a
                    # tile is ~400 cycles, and gemm_task's per-tile work measured 5 % of it)
                    if m0 + ROWS <= M and nb < whole:
                        whole_block(a, a0, lda, panels, q * pplane + nb * K * VO, K, bias, nb * VO, relu, r,
                                     m0 * ldr + nb * VO, ldr, residual, y, y0 + nb * VO, ldy)
                    else:
                        _task_call(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K,
                                   MB, M, task, nb, part)
            continue
        for g0 in range(lo, hi, group):
            for nb in range(NB):
                for task in range(g0, min(g0 + group, hi)):
                    gemm_task(a, aplane, lda, panels, pplane, bias, relu, r, ldr, residual, y, yplane, ldy, N, K, MB,
                              M, task, nb, part)


#: The most output channels this path takes: GoogLeNet's 1x1 convs (16-384 outputs) measured
#: faster than BLAS + epilogue (one thread, CPU time: 1.08-1.55x up to 256; 0.99-1.16x at 384 in
#: three runs, where keeping BLAS's threads out of the network still pays on two).
MAX_OUTPUTS = 384


def takes(weight_shape: tuple[int, ...], stride, pads, dilation, groups: int, activation: str | None) -> bool:
    """Whether an inference conv runs here: one GEMM on x's rows (1x1, stride 1, unpadded,
    ungrouped), at most MAX_OUTPUTS outputs, relu or no activation."""
    o, _, kh, kw = weight_shape
    flat_pads = tuple(p for pair in pads for p in pair)
    return ((kh, kw) == (1, 1) and tuple(stride) == (1, 1) and not any(flat_pads) and tuple(dilation) == (1, 1)
            and groups == 1 and o <= MAX_OUTPUTS and activation in (None, "relu"))


def pointwise_forward(x: np.ndarray, panels: np.ndarray, bias: np.ndarray, relu: bool, out: np.ndarray,
                      scratch: np.ndarray) -> None:
    """out (M, N: unit stride along N, any row stride) = f(x (M, K, C-contiguous) B + bias), B
    given as ``panels`` (:func:`pack_panels`), ``bias`` as :func:`padded_bias`; scratch: at least
    threads x ROWS * 2L elements of the dtype."""
    M, K = x.shape
    N = out.shape[1]
    if M == 0:
        return
    flat, ldy = row_span(out)
    width = panel_width(x.dtype)
    threads = scratch.size // (ROWS * width)
    fused_gemm(x.reshape(-1), 0, K, panels, 0, bias, relu, bias, 0, False, flat, 0, ldy, 1, M, N, K, GROUP,
               scratch[: threads * ROWS * width].reshape(threads, ROWS * width))


def stacked_panels(transformed: np.ndarray) -> np.ndarray:
    """Winograd's U (planes, C, O) as each plane's pack_panels, one after another (flat)."""
    planes, k, n = transformed.shape
    size = panels_size(n, k, transformed.dtype)
    packed = host_empty(planes * size, transformed.dtype)
    for q, plane in enumerate(transformed):
        pack_panels_into(plane.T, packed[q * size : (q + 1) * size])
    return packed


def stacked_panels_into(transformed: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`stacked_panels` of U (planes, C, O) into ``out`` (U.size elements) when O is whole panels (no
    allocation: training packs the weight every step); otherwise stacked_panels' own array."""
    planes, k, n = transformed.shape
    width = panel_width(transformed.dtype)
    if n % width:
        return stacked_panels(transformed)
    packed = out[: transformed.size].reshape(planes, n // width, k, width)
    np.copyto(packed, transformed.reshape(planes, k, n // width, width).transpose(0, 2, 1, 3))
    return packed.reshape(-1)


def stacked_gemm(a: np.ndarray, aplane: int, panels: np.ndarray, y: np.ndarray, yplane: int, planes: int, M: int,
                 N: int, K: int, zeros: np.ndarray, scratch: np.ndarray) -> None:
    """y plane q (M, N, at q*yplane, flat) = a plane q (M, K, at q*aplane) times B_q, given as
    :func:`stacked_panels`; ``zeros``: a padded_bias of nothing; scratch as pointwise_forward's."""
    width = panel_width(a.dtype)
    threads = scratch.size // (ROWS * width)
    pplane = panels.size // planes
    fused_gemm(a, aplane, K, panels, pplane, zeros, False, zeros, 0, False, y, yplane, N, planes, M, N, K, GROUP,
               scratch[: threads * ROWS * width].reshape(threads, ROWS * width))
