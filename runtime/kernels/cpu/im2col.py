"""The im2col convolution's Numba kernels on flat channels-last arrays (see conv.py for the
algorithm): gathering columns, the adjoint gather into dx, and two helpers for the weight
gradient. Each takes flat arrays plus one int64 geometry vector (indices below), so it has
exactly two specialisations (float32, float64); all are ``cache=True`` and none uses fastmath.

im2col and col2im are compiled with ``_nrt=False`` (no reference counting; they allocate nothing): the slice views
they take per pixel otherwise each cost two atomic reference-count updates. One thread, batch 64: resnet20's 1x1
stride-2 shortcut's im2col 0.66 -> 0.29 ms, col2im of its 3x3 stride-2 32 -> 64 conv 1.21 -> 0.83 ms, of the 3 -> 16
stem 3.2 -> 2.4 ms; the others within noise."""

from __future__ import annotations

from numba import njit, prange

# Indices into the geometry vector handed to the numba kernels.
_N, _H, _W, _C, _HO, _WO, _KH, _KW, _SH, _SW, _PT, _PL, _DH, _DW, _G = range(15)
_BLOCK = 32  # output pixels per parallel work item of im2col (amortises the index divisions)



@njit(parallel=True, cache=True, _nrt=False)
def im2col(x, col, geo, r0, nrows):  # pragma: no cover - compiled
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


@njit(parallel=True, cache=True, _nrt=False)
def col2im(dcol, dx, geo, r0, nrows):  # pragma: no cover - compiled
    """Adjoint of im2col for output rows [r0, r0 + nrows): gather into dx (N*H*W*C flat).

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
def swap_last2(src, dst, batches, p, q):  # pragma: no cover - compiled
    """dst[b, j, i] = src[b, i, j] for src (batches, p, q), both flat."""
    for bi in prange(batches):
        s = src[bi * p * q : (bi + 1) * p * q].reshape((p, q))
        d = dst[bi * p * q : (bi + 1) * p * q].reshape((q, p))
        for i in range(p):
            for j in range(q):
                d[j, i] = s[i, j]


@njit(parallel=True, cache=True)
def add_rows(out, vec, m):  # pragma: no cover - compiled
    """out (rows, m) += vec (vrows, m), row r getting row r % vrows of vec; both flat. With one
    row in vec this adds a bias to every row; with as many rows it is a plain parallel add."""
    vrows = vec.shape[0] // m
    for r in prange(out.shape[0] // m):
        v = (r % vrows) * m
        a = out[r * m : (r + 1) * m]
        b = vec[v : v + m]
        for e in range(m):
            a[e] += b[e]
