"""Convolution kernels on channels-last arrays: im2col + BLAS GEMM, forward and backward.

Layout (see ``runtime/ops/base.py``): x is N x H x W x C, the output N x Ho x Wo x Cout, the
weight keeps the user layout Cout x Cin/g x KH x KW. A 1-D convolution is the H = 1 case.

Algorithm (chosen by measurement, see ``benchmarks/bench_conv.py``):

* 1x1, stride 1, no padding: the convolution *is* a GEMM on the (N*H*W, C) view of x; per group
  the operands are strided column blocks of those views, so nothing is copied at all.
* Everything else: im2col in NHWC. A "column" row holds one output pixel's receptive field in
  (group, kh, kw, c) order; with channels last each (kh, group) run of KW*Cg inputs is one
  contiguous copy (for dilation 1). The weight is repacked once per call into the matching
  (Cout, KH, KW, Cg) order, so per group ``out = col_g @ W_g^T`` is one sgemm (pool_gemm.py's
  matmul with ``out=``: OpenBLAS from Numba's threads; BLAS handles the transposed operand). The
  column buffer is bounded: output rows (n, oh) are processed in chunks of at most ``COL_BUDGET``
  bytes of columns, reused between chunks and calls through a :class:`ConvWorkspace`.
* Backward: dW_g = dy_g^T @ col_g (per chunk, summed over chunks), dcol_g = dy_g @ W_g, and a
  parallel *gather* col2im that adds each input pixel's contributions. It runs over input rows,
  so no two threads ever write the same element (no races, no atomics); rows whose first
  contributor lies in the current chunk are overwritten, later chunks add. No dx work at all
  when dx is None.

* Small calls (< SERIAL_BELOW column elements) run the numba kernels on one thread, and a
  per-workspace cached plan keeps the Python overhead of a tiny call near 14 us.

Training-time shortcuts for small convs (benchmarks/bench_small_conv.py has the numbers):

* 3x3, stride 1, undilated, ungrouped, with at least 16 channels each side and an output of at least
  4x4 (the rule in workspace.py): Winograd F(2x2, 3x3) (winograd.py) for the forward (``keep=True``
  only: inference keeps the choice of the ``winograd`` pass), the input gradient (the forward's
  Winograd conv of dy, padded by 2 - p, with the filters turned by 180 degrees and their channels
  swapped) and, from 32 channels, the weight gradient in the Winograd domain. 2.25x fewer
  multiplications; float32 error within the inference kernel's tested bounds.
* Few channels, stride 1: the direct kernels of direct.py (forward for one input channel, the
  weight gradient for small Cin * Cout on wide rows), chosen per plan by the rule in workspace.py.
* Few channels: the register-blocked kernels of blocked.py, all in Numba's pool (no hand-off to
  BLAS's threads): forward, weight and input gradients for at least 2 input and at most 16 output
  channels (LeNet-5's c3), the planar forward for one input channel (c1; its weight gradient, at
  stride 1, by planar.py's dot-product tile), and blocked.py's GEMM for a small window over the
  whole image (c5). Rule in workspace.py. The forwards serve inference too (without ``keep``):
  LeNet-5 with all passes, 2 threads, 0.80 -> 0.62 ms at batch 8 and 1.80 -> 1.22 ms at batch
  64; resnet20 in eval mode without passes (its 16-channel convs), batch 64, 75.2 -> 61.3 ms.
* 16 to 64 channels in training (``keep=True``; resnet20's 3x3 convs): blocked_wide.py's register-blocked kernels
  with 12-accumulator tiles, taking precedence over Winograd: forward and input gradient (the forward of dy with
  the turned weight) at 16 and 32 channels, the weight gradient up to 64, and at stride 2 the forward, the weight
  gradient and dx by blocked_dx.py's kernel. Rule in workspace.py.
* GEMMs from 256 pixels with at most 4 MB of weight (the rule of inference's gemm_epilogue.py) on pointwise.py's
  register tile (``_tile_gemm``, the weight packed at each call): a 1x1 conv's forward and input gradient, and
  the forward's GEMM on im2col's columns (the input gradient's there measured 0.91-1.06x and stays BLAS's).
* ``keep=True`` (training) keeps the forward's columns (up to KEEP_BUDGET per conv) so that the
  weight gradient is a GEMM on them, without the backward's im2col.
* A window that covers the whole unpadded image (LeNet-5's c5) is a GEMM on x's (N, H*W*C) view:
  no im2col, and dx is a GEMM straight into dx's view, no col2im.

The kernels are in im2col.py, direct.py, blocked.py (its input gradient in blocked_dx.py),
blocked_wide.py and planar.py, the plans and scratch buffers in workspace.py; this module is the
public API. It stays one module (a little over 300 lines) so that each path's forward
and backward sit side by side: their column orders and chunking must agree.

Only numpy's BLAS is used (never scipy's, which is a second OpenBLAS with its own thread pool:
alternating the two costs milliseconds per switch on a 2-core machine). Numba kernels take flat
arrays plus one int64 geometry vector, so each has exactly two specialisations (float32,
float64); all are ``cache=True`` and none uses fastmath (blocked.py's tile fuses each multiply-add:
one rounding, as BLAS's FMA kernels). The tried alternatives and their
numbers (unchunked im2col, NumPy im2col, the "extended row" shifted-GEMM trick) are in
benchmarks/bench_conv.py.
"""
from __future__ import annotations

import numba
import numpy as np

from .blocked import blocked_forward, blocked_gemm, blocked_weight_grad
from .blocked import scratch_size as blocked_scratch_size
from .blocked import weight_scratch_size as blocked_weight_size
from .blocked_dx import blocked_input_grad_columns
from .blocked_wide import scratch_size as wide_scratch_size
from .blocked_wide import turn_weight, wide_forward, wide_weight_grad
from .blocked_wide import weight_scratch_size as wide_weight_size
from .direct import direct_forward, direct_weight_grad, scratch_size
from .epilogue import NONE, RELU, bias_activation, channel_rows
from .gemm_epilogue import pointwise_applies
from .im2col import add_rows, col2im, im2col, swap_last2
from .pointwise import (pack_panels_into, padded_bias_into, panel_width, panels_size, pointwise_forward,
                        stacked_panels_into, thread_scratch)
from .planar import planar_forward, planar_weight_grad, planar_weight_sizes
from .pool_gemm import matmul
from .winograd import (padded_u_size, panel_scratch_size, transform_weight_into, transform_weight_panels_into,
                       winograd_forward, winograd_weight_grad)
from .workspace import (  # noqa: F401  (re-exported: the API of a conv call)
    COL_BUDGET,
    DEFAULT_WORKSPACE,
    ConvPlan,
    ConvWorkspace,
    output_size,
    serial_threads,
)


def _check_arrays(inputs, outputs):
    """One float dtype throughout; outputs must be C-contiguous (they are written through flat
    views), inputs are made so (a no-op when they already are)."""
    dtype = inputs[0].dtype
    if dtype != np.float32 and dtype != np.float64:
        raise TypeError(f"conv: float32 or float64 arrays expected, got {dtype}")
    for a in inputs:
        if a is not None and a.dtype != dtype:
            raise TypeError(f"conv: mixed dtypes {dtype} and {a.dtype}")
    for a in outputs:
        if a is not None and (a.dtype != dtype or not a.flags.c_contiguous):
            raise ValueError(f"conv: outputs must be C-contiguous {dtype} arrays")
    return [a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a) for a in inputs]


def pack_weight(weight: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(O, Cg, KH, KW) → (O, KH*KW*Cg) in (kh, kw, c) order, the column order of the GEMMs."""
    o, cg, kh, kw = weight.shape
    if kh * kw == 1:
        return weight.reshape(o, cg)
    packed = np.empty(weight.size, weight.dtype) if out is None else out
    swap_last2(np.ascontiguousarray(weight).reshape(-1), packed, o, cg, kh * kw)
    return packed.reshape(o, kh * kw * cg)


def _packed_weight(weight, plan: ConvPlan, ws: ConvWorkspace, packed=None):
    """The column-order weight: ``packed`` when the caller keeps one, else packed now."""
    if packed is not None:
        return packed
    return pack_weight(weight, ws.get("w", weight.size, weight.dtype))


# --------------------------------------------------------------------------- public API


def conv2d_forward(x, weight, bias, stride, pads, dilation, groups, out, workspace=None, activation=NONE, packed=None,
                   keep=False):
    """out (N, Ho, Wo, Cout) = f(conv(x (N, H, W, Cin), weight (Cout, Cin/g, KH, KW)) + bias).

    Cross-correlation as in every CNN framework. ``stride`` and ``dilation`` are (h, w) pairs,
    ``pads`` is ((top, bottom), (left, right)), ``bias`` may be None, ``activation`` f is an
    epilogue code from runtime/kernels/cpu/epilogue.py (NONE, RELU, TANH, SIGMOID) applied with the
    bias per chunk, while the chunk is in cache. ``out`` is overwritten; it may be a channel slice
    of a larger channels-last array (a concat buffer): the GEMMs write straight into it. One
    float dtype throughout; ``workspace`` (a :class:`ConvWorkspace`) keeps scratch buffers and
    the call's plan between calls; ``packed`` is :func:`pack_weight` of ``weight``, for callers
    whose weight stays constant over many calls (inference). ``keep`` (training) keeps the
    im2col columns in the workspace, when they fit its keep budget, for a
    ``conv2d_backward(..., kept=True)`` on the same, unchanged x."""
    ws = DEFAULT_WORKSPACE if workspace is None else workspace
    plan = ws.plan(x, weight, stride, pads, dilation, groups, out)
    x, weight, bias = _check_arrays([x, weight, bias], [])
    if out.dtype != x.dtype:
        raise ValueError(f"conv: out must be a {x.dtype} array, got {out.dtype}")
    y2 = channel_rows(out, plan.O, "conv")
    if plan.N == 0:
        return out
    ws.kept_for = None
    previous = serial_threads(plan)
    try:
        if plan.wide_forward and (keep or ws.wide) and out.flags.c_contiguous:
            _wide_forward(x, weight, bias, out, plan.blocked_geo, plan, ws)
            if activation != NONE:
                bias_activation(y2, None, activation)
        elif plan.winograd_forward and (keep or ws.winograd):
            u, panels = _winograd_weight(weight, ws, flip=False)
            winograd_forward(x, u, bias, plan.pads, out, ws, activation, panels=panels)
        elif plan.planar and out.flags.c_contiguous:
            scratch, _ = _blocked_scratch(plan, ws, x.dtype)
            has_bias = bias is not None
            planar_forward(x.reshape(-1), weight.reshape(-1), bias if has_bias else _EMPTY[x.dtype.char], has_bias,
                           out.reshape(-1), plan.blocked_geo, scratch)
            if activation != NONE:
                bias_activation(y2, None, activation)
        elif plan.blocked and out.flags.c_contiguous:
            _blocked_forward(x, weight, bias, out, plan, ws)
            if activation != NONE:
                bias_activation(y2, None, activation)
        elif plan.direct_forward and out.flags.c_contiguous:
            has_bias = bias is not None
            direct_forward(x.reshape(-1), weight.reshape(-1), bias if has_bias else _EMPTY[x.dtype.char], has_bias,
                           out.reshape(-1), plan.direct_geo, _direct_scratch(plan, ws, x.dtype))
            if activation != NONE:
                bias_activation(y2, None, activation)
        else:
            _forward(x, weight, bias, plan, y2, ws, activation, packed, keep)
    finally:
        if previous:
            numba.set_num_threads(previous)
    return out


def _kept_key(x, plan):
    return x.__array_interface__["data"][0], x.shape, plan


def _forward(x, weight, bias, plan, y2, ws, activation, packed, keep):
    O, G, Og = plan.O, plan.G, plan.Og
    epilogue = bias is not None or activation != NONE
    Wo, chunk, rows = plan.Wo, plan.chunk, plan.rows
    if plan.pointwise:
        # One GEMM, then one epilogue pass: GEMMs on row chunks (so that the epilogue finds its
        # data in cache) measured no faster (1x1 layers of ResNet-50, one thread).
        x2 = x.reshape(-1, plan.C)
        w2 = weight.reshape(O, plan.Cg)
        if G == 1 and _tile_gemm(x2, w2, bias, activation, y2, ws):
            return
        if G == 1:
            matmul(x2, w2.T, out=y2)
        else:
            Cg = plan.Cg
            for g in range(G):
                matmul(x2[:, g * Cg : (g + 1) * Cg], w2[g * Og : (g + 1) * Og].T, out=y2[:, g * Og : (g + 1) * Og])
        if epilogue:
            bias_activation(y2, bias, activation)
        return
    wr = _packed_weight(weight, plan, ws, packed)
    Kg, K = plan.Kg, plan.K
    if plan.whole:
        if plan.blocked_gemm and y2.flags.c_contiguous:
            _gemm(x.reshape(-1), K, 1, wr.reshape(-1), 1, K, y2, rows, O, K, ws)
        else:
            matmul(x.reshape(rows, K), wr.T, out=y2)
        if epilogue:
            bias_activation(y2, bias, activation)
        return
    keep = keep and plan.keepable and not plan.direct_weight
    ws.kept_for = _kept_key(x, plan) if keep else None
    col = ws.get("kept", rows * Wo * K, x.dtype) if keep else ws.get("col", chunk * Wo * K, x.dtype)
    xf = x.reshape(-1)
    for r0 in range(0, rows, chunk):
        nr = min(chunk, rows - r0)
        m = nr * Wo
        c1 = col[r0 * Wo * K : (r0 * Wo + m) * K] if keep else col[: m * K]
        im2col(xf, c1, plan.geo, r0, nr)
        c2 = c1.reshape(m, K)
        yc = y2[r0 * Wo : r0 * Wo + m]
        if G == 1 and _tile_gemm(c2, wr, bias, activation, yc, ws):
            continue
        if G == 1:
            matmul(c2, wr.T, out=yc)
        else:
            for g in range(G):
                matmul(c2[:, g * Kg : (g + 1) * Kg], wr[g * Og : (g + 1) * Og].T, out=yc[:, g * Og : (g + 1) * Og])
        if epilogue:
            bias_activation(yc, bias, activation)


def conv2d_backward(x, weight, dy, stride, pads, dilation, groups, dx, dweight, dbias, workspace=None, kept=False):
    """Gradients of :func:`conv2d_forward` given dy (N, Ho, Wo, Cout): writes (overwrites, never
    accumulates) dx (N, H, W, Cin), dweight (like weight) and dbias (Cout,). Any of the three
    may be None to skip that gradient; with dx None no input-gradient work is done at all.
    ``kept``: the last forward on this workspace had ``keep=True`` and x has not changed since;
    its columns are then used when the workspace holds them for this x."""
    ws = DEFAULT_WORKSPACE if workspace is None else workspace
    plan = ws.plan(x, weight, stride, pads, dilation, groups, dy)
    x, weight, dy = _check_arrays([x, weight, dy], [dx, dweight, dbias])
    if dx is not None and dx.shape != x.shape:
        raise ValueError(f"conv: dx has shape {dx.shape}, expected {x.shape}")
    if dweight is not None and dweight.shape != weight.shape:
        raise ValueError(f"conv: dweight has shape {dweight.shape}, expected {weight.shape}")
    if dbias is not None and dbias.shape != (plan.O,):
        raise ValueError(f"conv: dbias has shape {dbias.shape}, expected {(plan.O,)}")
    O = plan.O
    if plan.N == 0:
        for a in (dx, dweight, dbias):
            if a is not None:
                a[...] = 0
        return dx, dweight, dbias
    dy2 = dy.reshape(-1, O)
    planar = plan.planar_weight and dweight is not None
    wide = plan.wide_weight and dweight is not None and not planar
    blocked = plan.blocked and dweight is not None and not plan.winograd_weight and not wide and not planar
    direct = (plan.direct_weight and dweight is not None and not plan.winograd_weight and not blocked and not wide
              and not planar)
    if dbias is not None and not direct and not blocked and not planar:
        np.matmul(ws.get("ones", dy2.shape[0], dy.dtype), dy2, out=dbias)  # BLAS gemv: sum of rows
    if dx is not None or dweight is not None:
        previous = serial_threads(plan)
        try:
            if wide:
                _wide_weight(x, dy, dweight, plan, ws)
                dweight = None
            if direct:
                _direct_weight(x, dy, dweight, dbias, plan, ws)
                dweight = None
            if blocked:
                _blocked_weight(x, dy, dweight, dbias, plan, ws)
                dweight = None
            if planar:
                _planar_weight(x, dy, dweight, dbias, plan, ws)
                dweight = None
            if plan.wide_dx and dx is not None:
                # dx = the forward of dy, padded by K - 1 - p, with the turned, channel-swapped weight
                turned = ws.get("wide_turned", weight.size, weight.dtype)
                O_, C_, KH, KW = weight.shape
                turn_weight(weight.reshape(-1), turned, O_, C_, KH, KW)
                _wide_forward(dy, turned.reshape(C_, O_, KH, KW), None, dx, plan.wide_dx_geo, plan, ws)
            wide_dx = plan.wide_dx or plan.wide_dx_scatter
            rest = None if plan.winograd_dx or plan.blocked or wide_dx else dx
            scatter = plan.wide_dx_scatter or (plan.blocked and not plan.winograd_dx and not plan.wide_dx)
            if scatter and dx is not None:
                _blocked_input_grad(dy, weight, dx, plan, ws)
            if plan.winograd_dx and dx is not None and not wide_dx:
                # dx = conv(dy padded by 2 - p, the turned weight with in and out channels swapped)
                u, panels = _winograd_weight(weight, ws, flip=True)
                (pt, pb), (pl, pr) = plan.pads
                winograd_forward(dy, u, None, ((2 - pt, 2 - pb), (2 - pl, 2 - pr)), dx, ws, panels=panels)
            if plan.winograd_weight and dweight is not None:
                winograd_weight_grad(x, dy, plan.pads, dweight, ws)
                dweight = None
            _backward(x, weight, dy, plan, rest, dweight, ws,
                      kept and ws.kept_for == _kept_key(x, plan))
        finally:
            if previous:
                numba.set_num_threads(previous)
    return dx, dweight, dbias


def _winograd_weight(weight, ws, flip):
    """(U or None, U packed for pointwise.py's tile), so that Winograd's 16 GEMMs run in Numba's pool, not
    OpenBLAS's. Where the GEMMs' N is whole panels, the transform writes the panels directly (no U): one pass over
    the weight instead of two (ResNet-18 CIFAR's 512 x 512 weight, one thread, CPU time: see winograd.py)."""
    size = 16 * weight.size // 9
    scratch = ws.get("winograd_gtaps", panel_scratch_size(weight.shape, flip), np.dtype(np.float64))
    panels = transform_weight_panels_into(weight, ws.get("winograd_panels", size, weight.dtype), flip, scratch)
    if panels is not None:
        return None, panels
    u = transform_weight_into(weight, ws.get("winograd_u", padded_u_size(weight.size), weight.dtype), flip,
                              padded=True)
    return u, stacked_panels_into(u, ws.get("winograd_panels", size, weight.dtype))


def _direct_scratch(plan, ws, dtype):
    """One row of the direct kernels' scratch per thread."""
    threads, size = numba.get_num_threads(), scratch_size(plan.direct_geo)
    return ws.get("direct", threads * size, dtype).reshape(threads, size)


def _direct_weight(x, dy, dweight, dbias, plan, ws):
    """dweight (and dbias, if asked) by the direct kernel: one partial sum per thread, then added."""
    scratch = _direct_scratch(plan, ws, x.dtype)
    threads, size = scratch.shape[0], dweight.size + plan.O
    parts = ws.get("dwparts", threads * size, x.dtype).reshape(threads, size)
    direct_weight_grad(x.reshape(-1), dy.reshape(-1), parts.reshape(-1), plan.direct_geo, scratch)
    total = parts[0] if threads == 1 else parts.sum(axis=0)
    dweight.reshape(-1)[...] = total[: dweight.size]
    if dbias is not None:
        dbias[...] = total[dweight.size :]


def _planar_weight(x, dy, dweight, dbias, plan, ws):
    """dweight and dbias (if asked) by planar.py's kernel (one input channel, stride 1)."""
    threads = numba.get_num_threads()
    size, part = planar_weight_sizes(plan.blocked_geo, x.itemsize)
    scratch = ws.get("planar", threads * size, x.dtype).reshape(threads, size)
    parts = ws.get("planar_parts", threads * part, x.dtype).reshape(threads, part)
    has_bias = dbias is not None
    planar_weight_grad(x.reshape(-1), dy.reshape(-1), dweight.reshape(-1), dbias if has_bias else _EMPTY[x.dtype.char],
                       has_bias, plan.blocked_geo, parts, scratch)


def _tile_gemm(a2, b, bias, activation, out2, ws) -> bool:
    """out2 (M, N: unit stride along N) = f(a2 (M, K) @ b.T + bias) on pointwise.py's register tile, in Numba's
    pool, with b (N, K) packed into the workspace at each call (training's weight changes every step) and the
    bias and relu on the registers; False, having done nothing, where inference's rule for its bound convs
    (gemm_epilogue.pointwise_applies: at least 256 rows, at most 4 MB of weight) or ``ws.tile`` leaves it to BLAS.
    Why: MobileNet's 1x1 GEMMs, M x K x N = 1568 x 512 x 512 to 100352 x 32 x 64, 2 threads, alternating in one
    process: 1.07-1.9x BLAS's; its whole training step (batch 8) 1.02-1.06x. On im2col's columns in training
    (ResNet-18's stride-2 convs and 7x7 stem at batch 32 and 64, 2 threads) the forward 0.95-1.30x."""
    M, K = a2.shape
    N = b.shape[0]
    dtype = a2.dtype
    if ws.tile is False or not a2.flags.c_contiguous or not pointwise_applies(M, NONE, N * K * a2.itemsize):
        return False
    width = panel_width(dtype)
    padded = padded_bias_into(bias, N, ws.get("tile_bias", -(-N // width) * width, dtype))
    panels = pack_panels_into(b, ws.get("tile_panels", panels_size(N, K, dtype), dtype))
    pointwise_forward(a2, panels, padded, activation == RELU, out2, thread_scratch(ws, dtype))
    if activation not in (NONE, RELU):
        bias_activation(out2, None, activation)
    return True


def _gemm(a, am, ak, b, bk, bn, c, M, N, K, ws):
    """c (M x N, contiguous) = A B by blocked.py's GEMM; A[m, k] = a[m*am + k*ak], B[k, n] = b[k*bk + n*bn]."""
    lanes = 64 // a.itemsize  # a tile's columns
    packed = ws.get("gemm_b", K * (-(-N // lanes) * lanes), a.dtype)
    threads = numba.get_num_threads()
    scratch = ws.get("gemm_acc", threads * 4 * lanes, a.dtype).reshape(threads, 4 * lanes)
    blocked_gemm(a, 0, am, ak, b, bk, bn, c.reshape(-1), M, N, K, packed, scratch)


def _blocked_scratch(plan, ws, dtype):
    """The blocked kernels' per-thread scratch (T rows) and packed-weight buffer."""
    threads, size = numba.get_num_threads(), blocked_scratch_size(plan.blocked_geo, dtype.itemsize)
    packed = ws.get("blocked_w", blocked_weight_size(plan.blocked_geo, dtype.itemsize), dtype)
    return ws.get("blocked", threads * size, dtype).reshape(threads, size), packed


def _blocked_forward(x, weight, bias, out, plan, ws):
    scratch, packed = _blocked_scratch(plan, ws, x.dtype)
    has_bias = bias is not None
    blocked_forward(x.reshape(-1), weight.reshape(-1), bias if has_bias else _EMPTY[x.dtype.char], has_bias,
                    out.reshape(-1), plan.blocked_geo, packed, scratch)


def _blocked_input_grad(dy, weight, dx, plan, ws):
    scratch, packed = _blocked_scratch(plan, ws, dy.dtype)
    blocked_input_grad_columns(dy.reshape(-1), weight.reshape(-1), dx.reshape(-1), plan.blocked_geo, packed, scratch)


def _blocked_weight(x, dy, dweight, dbias, plan, ws):
    """dweight and dbias (if asked) by the blocked kernel, from per-thread partial sums."""
    geo = plan.blocked_geo
    scratch, _ = _blocked_scratch(plan, ws, x.dtype)
    threads, width = scratch.shape[0], blocked_weight_size(geo, x.itemsize)
    parts = ws.get("blocked_parts", threads * width, x.dtype).reshape(threads, width)
    has_bias = dbias is not None
    blocked_weight_grad(x.reshape(-1), dy.reshape(-1), dweight.reshape(-1), dbias if has_bias else _EMPTY[x.dtype.char],
                        has_bias, geo, parts, scratch)


def _wide_scratch(plan, ws, dtype):
    """blocked_wide.py's per-thread scratch (T rows, for the forward's and the input gradient's geometry) and its
    packed-weight (or weight-gradient partial) size."""
    geos = (plan.blocked_geo, plan.wide_dx_geo)
    threads = numba.get_num_threads()
    size = max(wide_scratch_size(geo, dtype.itemsize) for geo in geos)
    width = max(wide_weight_size(geo, dtype.itemsize) for geo in geos)
    return ws.get("wide", threads * size, dtype).reshape(threads, size), width


def _wide_forward(x, weight, bias, out, geo, plan, ws):
    scratch, width = _wide_scratch(plan, ws, x.dtype)
    has_bias = bias is not None
    wide_forward(x.reshape(-1), weight.reshape(-1), bias if has_bias else _EMPTY[x.dtype.char], has_bias,
                 out.reshape(-1), geo, ws.get("wide_w", width, x.dtype), scratch)


def _wide_weight(x, dy, dweight, plan, ws):
    """dweight by blocked_wide.py's kernel, from per-thread partial sums (dbias, if asked, by the caller's gemv)."""
    scratch, width = _wide_scratch(plan, ws, x.dtype)
    parts = ws.get("wide_parts", scratch.shape[0] * width, x.dtype).reshape(scratch.shape[0], width)
    wide_weight_grad(x.reshape(-1), dy.reshape(-1), dweight.reshape(-1), plan.blocked_geo, parts, scratch)


_EMPTY = {"f": np.empty(0, np.float32), "d": np.empty(0, np.float64)}


def _backward(x, weight, dy, plan, dx, dweight, ws, kept):
    if dx is None and dweight is None:
        return
    O, G, Og, Cg, C = plan.O, plan.G, plan.Og, plan.Cg, plan.C
    dy2 = dy.reshape(-1, O)
    if plan.pointwise:
        x2 = x.reshape(-1, C)
        w2 = weight.reshape(O, Cg)
        for g in range(G):
            go, gc = slice(g * Og, (g + 1) * Og), slice(g * Cg, (g + 1) * Cg)
            if dweight is not None:
                matmul(dy2[:, go].T, x2[:, gc], out=dweight.reshape(O, Cg)[go])
            if dx is not None and not (G == 1 and dx.flags.c_contiguous
                                       and _tile_gemm(dy2, w2.T, None, NONE, dx.reshape(-1, C), ws)):
                matmul(dy2[:, go], w2[go], out=dx.reshape(-1, C)[:, gc])
        return
    T, Kg, K, Wo, chunk, rows, geo = plan.T, plan.Kg, plan.K, plan.Wo, plan.chunk, plan.rows, plan.geo
    wr = _packed_weight(weight, plan, ws) if dx is not None else None
    if plan.whole:
        # the column matrix is x's (N, K) view, its adjoint dx's: GEMMs only
        x2 = x.reshape(rows, K)
        if dweight is not None:
            dwr = ws.get("dw", O * K, x.dtype).reshape(O, K) if T > 1 else dweight.reshape(O, K)
            if plan.blocked_gemm:
                _gemm(dy.reshape(-1), 1, O, x.reshape(-1), K, 1, dwr, O, K, rows, ws)
            else:
                matmul(dy2.T, x2, out=dwr)
            if T > 1:
                swap_last2(dwr.reshape(-1), dweight.reshape(-1), O, T, Cg)
        if dx is not None:
            if plan.blocked_gemm:
                _gemm(dy.reshape(-1), O, 1, wr.reshape(-1), K, 1, dx.reshape(rows, K), rows, K, O, ws)
            else:
                matmul(dy2, wr, out=dx.reshape(rows, K))
        return
    col = ws.get("col", chunk * Wo * K, x.dtype)
    kept_col = ws.get("kept", rows * Wo * K, x.dtype) if kept else None
    if dweight is not None:
        # dW in column order (O, KH*KW*Cg); the partial sums of later chunks go through `part`
        dwr = ws.get("dw", O * Kg, x.dtype).reshape(O, Kg) if T > 1 else dweight.reshape(O, Kg)
        part = ws.get("dwpart", O * Kg, x.dtype).reshape(O, Kg) if rows > chunk else None
    xf = x.reshape(-1)
    dxf = dx.reshape(-1) if dx is not None else None
    for r0 in range(0, rows, chunk):
        nr = min(chunk, rows - r0)
        m = nr * Wo
        c1 = col[: m * K]
        c2 = c1.reshape(m, K)
        dyc = dy2[r0 * Wo : r0 * Wo + m]
        if dweight is not None:
            if kept:
                xc = kept_col[r0 * Wo * K : (r0 * Wo + m) * K].reshape(m, K)
            else:
                im2col(xf, c1, geo, r0, nr)
                xc = c2
            target = dwr if r0 == 0 else part
            if G == 1:
                matmul(dyc.T, xc, out=target)
            else:
                for g in range(G):
                    matmul(dyc[:, g * Og : (g + 1) * Og].T, xc[:, g * Kg : (g + 1) * Kg], out=target[g * Og : (g + 1) * Og])
            if r0:
                add_rows(dwr.reshape(-1), part.reshape(-1), Kg)
        if dx is not None:
            # dcol = dy @ W per group, into the same buffer, then gathered into dx
            if G == 1:
                matmul(dyc, wr, out=c2)
            else:
                for g in range(G):
                    matmul(dyc[:, g * Og : (g + 1) * Og], wr[g * Og : (g + 1) * Og], out=c2[:, g * Kg : (g + 1) * Kg])
            col2im(c1, dxf, geo, r0, nr)
    if dweight is not None and T > 1:
        swap_last2(dwr.reshape(-1), dweight.reshape(-1), O, T, Cg)
