"""Convolution kernels on channels-last arrays: im2col + BLAS GEMM, forward and backward.

Layout (see ``runtime/ops/base.py``): x is N x H x W x C, the output N x Ho x Wo x Cout, the
weight keeps the user layout Cout x Cin/g x KH x KW. A 1-D convolution is the H = 1 case.

Algorithm (chosen by measurement, see ``benchmarks/bench_conv.py``):

* 1x1, stride 1, no padding: the convolution *is* a GEMM on the (N*H*W, C) view of x; per group
  the operands are strided column blocks of those views, so nothing is copied at all.
* Everything else: im2col in NHWC. A "column" row holds one output pixel's receptive field in
  (group, kh, kw, c) order; with channels last each (kh, group) run of KW*Cg inputs is one
  contiguous copy (for dilation 1). The weight is repacked once per call into the matching
  (Cout, KH, KW, Cg) order, so per group ``out = col_g @ W_g^T`` is one sgemm (numpy matmul with
  ``out=``; BLAS handles the transposed operand). The column buffer is bounded: output rows
  (n, oh) are processed in chunks of at most ``COL_BUDGET`` bytes of columns, reused between
  chunks and calls through a :class:`ConvWorkspace`.
* Backward: dW_g = dy_g^T @ col_g (per chunk, summed over chunks), dcol_g = dy_g @ W_g, and a
  parallel *gather* col2im that adds each input pixel's contributions. It runs over input rows,
  so no two threads ever write the same element (no races, no atomics); rows whose first
  contributor lies in the current chunk are overwritten, later chunks add. No dx work at all
  when dx is None.

* Small calls (< SERIAL_BELOW column elements) run the numba kernels on one thread, and a
  per-workspace cached plan keeps the Python overhead of a tiny call near 14 us.

Only numpy's BLAS is used (never scipy's, which is a second OpenBLAS with its own thread pool:
alternating the two costs milliseconds per switch on a 2-core machine). Numba kernels take flat
arrays plus one int64 geometry vector, so each has exactly two specialisations (float32,
float64); all are ``cache=True`` and none uses fastmath. The tried alternatives and their
numbers (unchunked im2col, NumPy im2col, the "extended row" shifted-GEMM trick) are in
benchmarks/bench_conv.py.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .epilogue import NONE, bias_activation, channel_rows

#: Target size, in bytes, of the im2col column buffer (forward and backward): small enough to
#: stay in the last-level cache between the im2col and the GEMM that consumes it.
COL_BUDGET = 8 << 20
#: ... but a chunk has at least this many GEMM rows (output pixels), whatever its width: every
#: GEMM call repacks the whole weight matrix, so short chunks would pay for that again and again.
#: The buffer is thus bounded by max(COL_BUDGET, MIN_CHUNK_PIXELS * K * itemsize), independent of
#: the batch size and the image size.
MIN_CHUNK_PIXELS = 2048
#: Calls that copy fewer column elements than this run their numba kernels on one thread: waking
#: the second thread costs more than it saves (and far more when another process holds a core).
SERIAL_BELOW = 1 << 16

# Indices into the geometry vector handed to the numba kernels.
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _DH, _DW, _G = range(15)
_BLOCK = 32  # output pixels per parallel work item of _im2col (amortises the index divisions)


# --------------------------------------------------------------------------- numba kernels


@njit(parallel=True, cache=True)
def _im2col(x, col, geo, r0, nrows):  # pragma: no cover - compiled
    """Columns of output rows [r0, r0 + nrows) (flattened n*Ho + oh) into col (nrows*Wo, K),
    K = G*KH*KW*Cg in (g, kh, kw, c) order. Positions in the padding become 0."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo, KH, KW = geo[_HO], geo[_WO], geo[_KH], geo[_KW]
    sh, sw, pt, pl, dh, dw, G = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW], geo[_G]
    Cg = C // G
    KWC = KW * Cg
    Kg = KH * KWC
    K = G * Kg
    nblk = (Wo + _BLOCK - 1) // _BLOCK  # parallel work items: blocks of _BLOCK output pixels
    # Element loops over slice views throughout: numba turns them into vectorised copies, while
    # slice assignment has a large fixed cost (tiny runs when C is 1) and loops over computed
    # flat indices do not vectorise (negative-index wraparound checks).
    if G == 1 and dw == 1:
        # one run of KW*C inputs per kh; only edge pixels need the per-element test
        for t in prange(nrows * nblk):
            i = t // nblk
            ow0 = (t % nblk) * _BLOCK
            n = (r0 + i) // Ho
            oh = (r0 + i) % Ho
            for ow in range(ow0, min(ow0 + _BLOCK, Wo)):
                pix = i * Wo + ow
                dst = col[pix * K : (pix + 1) * K]
                iw0 = ow * sw - pl
                inner = iw0 >= 0 and iw0 + KW <= W
                for kh in range(KH):
                    ih = oh * sh - pt + kh * dh
                    seg = dst[kh * KWC : (kh + 1) * KWC]
                    if ih < 0 or ih >= H:
                        for e in range(KWC):
                            seg[e] = 0
                    elif inner:
                        src = x[((n * H + ih) * W + iw0) * C : ((n * H + ih) * W + iw0) * C + KWC]
                        for e in range(KWC):
                            seg[e] = src[e]
                    else:
                        src = x[(n * H + ih) * W * C : (n * H + ih + 1) * W * C]
                        lo = -iw0 * C
                        hi = (W - iw0) * C
                        for e in range(KWC):
                            if e >= lo and e < hi:
                                seg[e] = src[e - lo]
                            else:
                                seg[e] = 0
    else:
        for t in prange(nrows * nblk):
            i = t // nblk
            ow0 = (t % nblk) * _BLOCK
            n = (r0 + i) // Ho
            oh = (r0 + i) % Ho
            for ow in range(ow0, min(ow0 + _BLOCK, Wo)):
                pix = i * Wo + ow
                dst = col[pix * K : (pix + 1) * K]
                iw0 = ow * sw - pl
                # valid kw range: 0 <= iw0 + kw*dw < W
                kw0 = 0
                if iw0 < 0:
                    kw0 = (-iw0 + dw - 1) // dw
                kw1 = KW
                if iw0 + (KW - 1) * dw >= W:
                    kw1 = (W - iw0 + dw - 1) // dw if W > iw0 else 0
                if kw0 > KW:
                    kw0 = KW
                if kw1 < kw0:
                    kw1 = kw0
                for kh in range(KH):
                    ih = oh * sh - pt + kh * dh
                    for g in range(G):
                        seg = dst[g * Kg + kh * KWC : g * Kg + (kh + 1) * KWC]
                        if ih < 0 or ih >= H:
                            for e in range(KWC):
                                seg[e] = 0
                            continue
                        src = x[(n * H + ih) * W * C : (n * H + ih + 1) * W * C]
                        for e in range(kw0 * Cg):
                            seg[e] = 0
                        for kw in range(kw0, kw1):
                            a = seg[kw * Cg : (kw + 1) * Cg]
                            b = src[(iw0 + kw * dw) * C + g * Cg : (iw0 + kw * dw) * C + (g + 1) * Cg]
                            for e in range(Cg):
                                a[e] = b[e]
                        z = seg[kw1 * Cg :]
                        for e in range(z.shape[0]):
                            z[e] = 0


@njit(parallel=True, cache=True)
def _col2im(dcol, dx, geo, r0, nrows):  # pragma: no cover - compiled
    """Adjoint of _im2col for output rows [r0, r0 + nrows): gather into dx (N*H*W*C flat).

    Each input row is handled by one iteration (no races). A row whose first contributing output
    row lies in this chunk is overwritten, otherwise added to; rows no window ever touches are
    zeroed by the chunk holding their image's output row 0. So over all chunks, in order, every
    element of dx is written exactly once before it is added to."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    Ho, Wo, KH, KW = geo[_HO], geo[_WO], geo[_KH], geo[_KW]
    sh, sw, pt, pl, dh, dw, G = geo[_SH], geo[_SW], geo[_PT], geo[_PL], geo[_DH], geo[_DW], geo[_G]
    Cg = C // G
    KWC = KW * Cg
    Kg = KH * KWC
    K = G * Kg
    n0 = r0 // Ho
    n1 = (r0 + nrows - 1) // Ho
    for t in prange((n1 - n0 + 1) * H):
        n = n0 + t // H
        ih = t % H
        a = r0 - n * Ho  # this chunk's output rows of image n: [a, b)
        if a < 0:
            a = 0
        b = r0 + nrows - n * Ho
        if b > Ho:
            b = Ho
        first = Ho
        inside = False
        for kh in range(KH):
            u = ih + pt - kh * dh
            if u >= 0 and u % sh == 0:
                oh = u // sh
                if oh < Ho:
                    if oh < first:
                        first = oh
                    if oh >= a and oh < b:
                        inside = True
        row = dx[(n * H + ih) * W * C : (n * H + ih + 1) * W * C]
        if not inside:
            if first == Ho and a == 0:
                for e in range(W * C):
                    row[e] = 0
            continue
        if first >= a:
            for e in range(W * C):
                row[e] = 0
        for kh in range(KH):
            u = ih + pt - kh * dh
            if u < 0 or u % sh != 0:
                continue
            oh = u // sh
            if oh < a or oh >= b:
                continue
            prow = (n * Ho + oh - r0) * Wo
            for ow in range(Wo):
                src = dcol[(prow + ow) * K : (prow + ow + 1) * K]
                iw0 = ow * sw - pl
                if G == 1 and dw == 1:
                    seg = src[kh * KWC : (kh + 1) * KWC]
                    if iw0 >= 0 and iw0 + KW <= W:
                        dst = row[iw0 * C : iw0 * C + KWC]
                        for e in range(KWC):
                            dst[e] += seg[e]
                    else:
                        lo = -iw0 * C
                        hi = (W - iw0) * C
                        for e in range(KWC):
                            if e >= lo and e < hi:
                                row[e - lo] += seg[e]
                    continue
                kw0 = 0
                if iw0 < 0:
                    kw0 = (-iw0 + dw - 1) // dw
                kw1 = KW
                if iw0 + (KW - 1) * dw >= W:
                    kw1 = (W - iw0 + dw - 1) // dw if W > iw0 else 0
                for g in range(G):
                    for kw in range(kw0, kw1):
                        d0 = (iw0 + kw * dw) * C + g * Cg
                        s0 = g * Kg + kh * KWC + kw * Cg
                        dst = row[d0 : d0 + Cg]
                        seg = src[s0 : s0 + Cg]
                        for e in range(Cg):
                            dst[e] += seg[e]


@njit(parallel=True, cache=True)
def _swap_last2(src, dst, batches, p, q):  # pragma: no cover - compiled
    """dst[b, j, i] = src[b, i, j] for src (batches, p, q), both flat."""
    for bi in prange(batches):
        s = src[bi * p * q : (bi + 1) * p * q].reshape((p, q))
        d = dst[bi * p * q : (bi + 1) * p * q].reshape((q, p))
        for i in range(p):
            for j in range(q):
                d[j, i] = s[i, j]


@njit(parallel=True, cache=True)
def _add_rows(out, vec, m):  # pragma: no cover - compiled
    """out (rows, m) += vec (vrows, m), row r getting row r % vrows of vec; both flat. With one
    row in vec this adds a bias to every row; with as many rows it is a plain parallel add."""
    vrows = vec.shape[0] // m
    for r in prange(out.shape[0] // m):
        v = (r % vrows) * m
        a = out[r * m : (r + 1) * m]
        b = vec[v : v + m]
        for e in range(m):
            a[e] += b[e]


# --------------------------------------------------------------------------- plans


def output_size(size: int, kernel: int, stride: int, pads: tuple[int, int], dilation: int) -> int:
    return (size + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1


class _Plan:
    """Everything about one call shape that does not depend on the data: the geometry vector
    for the kernels, the path, the chunking. Cached per workspace, so a repeated call skips it."""

    __slots__ = ("geo", "pointwise", "N", "C", "O", "G", "Cg", "Og", "T", "Kg", "K", "Wo", "rows", "chunk", "serial")

    def __init__(self, x_shape, w_shape, stride, pads, dilation, groups, y_shape, itemsize, ws):
        N, H, W, C = x_shape
        O, Cg, KH, KW = w_shape
        sh, sw = (int(v) for v in stride)
        (pt, pb), (pl, pr) = ((int(a), int(b)) for a, b in pads)
        dh, dw = (int(v) for v in dilation)
        G = int(groups)
        if min(sh, sw, dh, dw) < 1 or min(pt, pb, pl, pr) < 0:
            raise ValueError("conv: stride and dilation must be >= 1 and padding >= 0")
        Ho = output_size(H, KH, sh, (pt, pb), dh)
        Wo = output_size(W, KW, sw, (pl, pr), dw)
        if G < 1 or C != Cg * G or O % G:
            raise ValueError(f"conv: {C} input channels, weight {tuple(w_shape)}, {G} groups do not match")
        if Ho < 1 or Wo < 1 or tuple(y_shape) != (N, Ho, Wo, O):
            raise ValueError(f"conv: output has shape {tuple(y_shape)}, expected {(N, Ho, Wo, O)}")
        self.N, self.C, self.O, self.G, self.Cg, self.Og, self.Wo = N, C, O, G, Cg, O // G, Wo
        self.T = KH * KW
        self.Kg = self.T * Cg
        self.K = G * self.Kg
        self.pointwise = KH == 1 and KW == 1 and sh == 1 and sw == 1 and pt == pb == pl == pr == 0
        self.rows = N * Ho
        # a column buffer of about ws.budget bytes, but at least ws.min_pixels output pixels
        per_row = Wo * self.K * itemsize
        self.chunk = min(self.rows, max(ws.budget // max(per_row, 1), -(-ws.min_pixels // Wo), 1))
        self.serial = self.rows * Wo * self.K < SERIAL_BELOW
        self.geo = np.array([N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G], np.int64)


class ConvWorkspace:
    """Scratch buffers reused between calls (column buffer, repacked weights, dW partials) and
    the plans of the call shapes seen. One per op, or one shared by ops that run one after
    another (optimised inference); not thread-safe. Buffers grow to the largest request and are
    then reused."""

    def __init__(self, budget: int | None = None, min_pixels: int | None = None):
        self.budget = COL_BUDGET if budget is None else budget
        self.min_pixels = MIN_CHUNK_PIXELS if min_pixels is None else min_pixels
        self._bufs: dict[tuple[str, str], np.ndarray] = {}
        self._plans: dict[tuple, _Plan] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held in scratch buffers."""
        return sum(buf.nbytes for buf in self._bufs.values())

    def get(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        key = (name, dtype.char)
        buf = self._bufs.get(key)
        if buf is None or buf.size < size:
            buf = np.ones(max(size, 1), dtype) if name == "ones" else np.empty(max(size, 1), dtype)
            self._bufs[key] = buf
        return buf[:size]

    def plan(self, x, weight, stride, pads, dilation, groups, y) -> _Plan:
        key = (x.shape, weight.shape, stride, pads, dilation, groups, y.shape, x.dtype.char)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(x.shape, weight.shape, stride, pads, dilation, groups, y.shape, x.itemsize, self)
        return plan


DEFAULT_WORKSPACE = ConvWorkspace()


def _serial(plan: _Plan) -> int:
    """For small work, run numba's kernels on this thread only (returns the setting to restore;
    0 when nothing was changed). Waking the second thread costs more than it saves there, and
    far more when another process holds a core. (Not inside the kernels: a jitted
    set_num_threads makes a function uncacheable.)"""
    if not plan.serial:
        return 0
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    return previous


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
    _swap_last2(np.ascontiguousarray(weight).reshape(-1), packed, o, cg, kh * kw)
    return packed.reshape(o, kh * kw * cg)


def _packed_weight(weight, plan: _Plan, ws: ConvWorkspace, packed=None):
    """The column-order weight: ``packed`` when the caller keeps one, else packed now."""
    if packed is not None:
        return packed
    return pack_weight(weight, ws.get("w", weight.size, weight.dtype))


# --------------------------------------------------------------------------- public API


def conv2d_forward(x, weight, bias, stride, pads, dilation, groups, out, workspace=None, activation=NONE, packed=None):
    """out (N, Ho, Wo, Cout) = f(conv(x (N, H, W, Cin), weight (Cout, Cin/g, KH, KW)) + bias).

    Cross-correlation as in every CNN framework. ``stride`` and ``dilation`` are (h, w) pairs,
    ``pads`` is ((top, bottom), (left, right)), ``bias`` may be None, ``activation`` f is an
    epilogue code from runtime/kernels/cpu/epilogue.py (NONE, RELU, TANH, SIGMOID) applied with the
    bias per chunk, while the chunk is in cache. ``out`` is overwritten; it may be a channel slice
    of a larger channels-last array (a concat buffer): the GEMMs write straight into it. One
    float dtype throughout; ``workspace`` (a :class:`ConvWorkspace`) keeps scratch buffers and
    the call's plan between calls; ``packed`` is :func:`pack_weight` of ``weight``, for callers
    whose weight stays constant over many calls (inference)."""
    ws = DEFAULT_WORKSPACE if workspace is None else workspace
    plan = ws.plan(x, weight, stride, pads, dilation, groups, out)
    x, weight, bias = _check_arrays([x, weight, bias], [])
    if out.dtype != x.dtype:
        raise ValueError(f"conv: out must be a {x.dtype} array, got {out.dtype}")
    y2 = channel_rows(out, plan.O, "conv")
    if plan.N == 0:
        return out
    previous = _serial(plan)
    try:
        _forward(x, weight, bias, plan, y2, ws, activation, packed)
    finally:
        if previous:
            numba.set_num_threads(previous)
    return out


def _forward(x, weight, bias, plan, y2, ws, activation, packed):
    O, G, Og = plan.O, plan.G, plan.Og
    epilogue = bias is not None or activation != NONE
    Wo, chunk, rows = plan.Wo, plan.chunk, plan.rows
    if plan.pointwise:
        # One GEMM, then one epilogue pass: GEMMs on row chunks (so that the epilogue finds its
        # data in cache) measured no faster (1x1 layers of ResNet-50, one thread).
        x2 = x.reshape(-1, plan.C)
        w2 = weight.reshape(O, plan.Cg)
        if G == 1:
            np.matmul(x2, w2.T, out=y2)
        else:
            Cg = plan.Cg
            for g in range(G):
                np.matmul(x2[:, g * Cg : (g + 1) * Cg], w2[g * Og : (g + 1) * Og].T, out=y2[:, g * Og : (g + 1) * Og])
        if epilogue:
            bias_activation(y2, bias, activation)
        return
    wr = _packed_weight(weight, plan, ws, packed)
    Kg, K = plan.Kg, plan.K
    col = ws.get("col", chunk * Wo * K, x.dtype)
    xf = x.reshape(-1)
    for r0 in range(0, rows, chunk):
        nr = min(chunk, rows - r0)
        m = nr * Wo
        c1 = col[: m * K]
        _im2col(xf, c1, plan.geo, r0, nr)
        c2 = c1.reshape(m, K)
        yc = y2[r0 * Wo : r0 * Wo + m]
        if G == 1:
            np.matmul(c2, wr.T, out=yc)
        else:
            for g in range(G):
                np.matmul(c2[:, g * Kg : (g + 1) * Kg], wr[g * Og : (g + 1) * Og].T, out=yc[:, g * Og : (g + 1) * Og])
        if epilogue:
            bias_activation(yc, bias, activation)


def conv2d_backward(x, weight, dy, stride, pads, dilation, groups, dx, dweight, dbias, workspace=None):
    """Gradients of :func:`conv2d_forward` given dy (N, Ho, Wo, Cout): writes (overwrites, never
    accumulates) dx (N, H, W, Cin), dweight (like weight) and dbias (Cout,). Any of the three
    may be None to skip that gradient; with dx None no input-gradient work is done at all."""
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
    if dbias is not None:
        np.matmul(ws.get("ones", dy2.shape[0], dy.dtype), dy2, out=dbias)  # BLAS gemv: sum of rows
    if dx is not None or dweight is not None:
        previous = _serial(plan)
        try:
            _backward(x, weight, dy, plan, dx, dweight, ws)
        finally:
            if previous:
                numba.set_num_threads(previous)
    return dx, dweight, dbias


def _backward(x, weight, dy, plan, dx, dweight, ws):
    O, G, Og, Cg, C = plan.O, plan.G, plan.Og, plan.Cg, plan.C
    dy2 = dy.reshape(-1, O)
    if plan.pointwise:
        x2 = x.reshape(-1, C)
        w2 = weight.reshape(O, Cg)
        for g in range(G):
            go, gc = slice(g * Og, (g + 1) * Og), slice(g * Cg, (g + 1) * Cg)
            if dweight is not None:
                np.matmul(dy2[:, go].T, x2[:, gc], out=dweight.reshape(O, Cg)[go])
            if dx is not None:
                np.matmul(dy2[:, go], w2[go], out=dx.reshape(-1, C)[:, gc])
        return
    T, Kg, K, Wo, chunk, rows, geo = plan.T, plan.Kg, plan.K, plan.Wo, plan.chunk, plan.rows, plan.geo
    wr = _packed_weight(weight, plan, ws) if dx is not None else None
    col = ws.get("col", chunk * Wo * K, x.dtype)
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
            _im2col(xf, c1, geo, r0, nr)
            target = dwr if r0 == 0 else part
            if G == 1:
                np.matmul(dyc.T, c2, out=target)
            else:
                for g in range(G):
                    np.matmul(dyc[:, g * Og : (g + 1) * Og].T, c2[:, g * Kg : (g + 1) * Kg], out=target[g * Og : (g + 1) * Og])
            if r0:
                _add_rows(dwr.reshape(-1), part.reshape(-1), Kg)
        if dx is not None:
            # dcol = dy @ W per group, into the same buffer, then gathered into dx
            if G == 1:
                np.matmul(dyc, wr, out=c2)
            else:
                for g in range(G):
                    np.matmul(dyc[:, g * Og : (g + 1) * Og], wr[g * Og : (g + 1) * Og], out=c2[:, g * Kg : (g + 1) * Kg])
            _col2im(c1, dxf, geo, r0, nr)
    if dweight is not None and T > 1:
        _swap_last2(dwr.reshape(-1), dweight.reshape(-1), O, T, Cg)
