"""The input gradient of blocked.py's convolutions (LeNet-5's c3) with the register tile adding
straight into the padded dx image: no accumulator buffer, no scatter.

For an output pixel and a kernel row, the tile computes what the pixel's KW*C inputs (a run of
the padded image) receive: rows are pixels, lanes (kw, c), k the output channels, b = dy, v = the
weight packed as (KH, O, KW*C). The kernel this one replaced (in blocked.py before) took 4
neighbouring output pixels of a row, computed their share into a zeroed buffer, then added it to
the image run by run. Neighbouring pixels' runs overlap (they are C apart, KW*C long), so the tile
could not add into the image itself. Pixels of one column in P neighbouring output rows can: their
runs for one kernel row lie in different image rows. So here a tile is P output rows at one
column; its accumulators are loaded from the padded image, receive the O output channels' share,
and are stored back. The runs are rounded up to whole vectors; the weight is zero there, so the
lanes past KW*C add zeros to the neighbouring inputs (with a non-finite dy they would spread it
to those neighbours: then dx is non-finite anyway).

Measured (LeNet-5's c3, batch 64, float32, one thread, process CPU time, median of 20 runs
alternating with that kernel on a shared 2-core AMD EPYC): 0.45 against 0.99 ms. (Before, the
forward on dy padded by K - 1 with the turned weight was measured at 1.6 ms: the padding makes
twice the multiply-adds.)
"""

from __future__ import annotations

from numba import njit, prange

from .blocked import (_C, _H, _HO, _HP, _KH, _KW, _N, _O, _PL, _PT, _SH, _SW, _W, _WO, _WP, _make_tile,
                      _tile_1x2)

#: 5 output rows x 2 vectors (LeNet-5's c3 has 10 output rows): 10 accumulators.
_tile_5x2 = _make_tile(5, 2)
_ROWS = 5


@njit(parallel=True, cache=True)
def blocked_input_grad_columns(dy, weight, dx, geo, wq, scratch):  # pragma: no cover - compiled
    """dx (N, H, W, C) of the conv x -> dy (N, Ho, Wo, O) with weight (O, C, KH, KW), all flat,
    overwritten, any stride and padding; geo: blocked.py's blocked_geometry; wq: its
    weight_scratch_size (the packed weight); scratch: T x its scratch_size, images split in
    contiguous ranges over the T rows."""
    N, H, W, C, Ho, Wo, KH, KW, sh, sw, O, Hp, Wp, pt, pl = (geo[_N], geo[_H], geo[_W], geo[_C], geo[_HO], geo[_WO],
                                                             geo[_KH], geo[_KW], geo[_SH], geo[_SW], geo[_O], geo[_HP],
                                                             geo[_WP], geo[_PT], geo[_PL])
    L = 32 // dy.itemsize
    VO = 2 * L
    KWC = KW * C
    KWCp = (KWC + VO - 1) // VO * VO
    # the weight as (KH, O, KW*C rounded up to VO), zeros in the rounding
    wq[: KH * O * KWCp] = 0
    for o in range(O):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    wq[(kh * O + o) * KWCp + kw * C + c] = weight[((o * C + c) * KH + kh) * KW + kw]
    image = Hp * Wp * C
    row = sh * Wp * C  # from one output row's runs to the next's
    T = scratch.shape[0]
    for t in prange(T):
        xp = scratch[t, : image + KWCp]  # (the last run's rounding reaches past the image)
        for n in range(t * N // T, (t + 1) * N // T):
            xp[:] = 0
            for ow in range(Wo):
                for oh0 in range(0, Ho, _ROWS):
                    rows = min(_ROWS, Ho - oh0)
                    d0 = ((n * Ho + oh0) * Wo + ow) * O
                    for kh in range(KH):
                        x0 = ((oh0 * sh + kh) * Wp + ow * sw) * C
                        for jb in range(0, KWC, VO):
                            v0 = kh * O * KWCp + jb
                            if rows == _ROWS:
                                _tile_5x2(xp, x0 + jb, row, dy, d0, Wo * O, 0, 1, wq, v0, 0, KWCp, 1, O)
                            else:
                                for p in range(rows):
                                    _tile_1x2(xp, x0 + jb + p * row, 0, dy, d0 + p * Wo * O, 0, 0, 1, wq, v0, 0, KWCp,
                                              1, O)
            for h in range(H):
                src = ((h + pt) * Wp + pl) * C
                dx[(n * H + h) * W * C : (n * H + h + 1) * W * C] = xp[src : src + W * C]
