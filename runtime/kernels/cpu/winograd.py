"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1, dilation-1, ungrouped layers, channels last (inference, and
training through conv.py: see "Training" at the end of this docstring).

F(2x2, 3x3) computes a 2x2 output tile from a 4x4 input tile with 16 multiplications per (input channel, output
channel) instead of 36: Y = A^T [U . V] A, where U = G g G^T is the transformed 3x3 filter and V = B^T d B the
transformed input tile (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Summed over
input channels, the elementwise product becomes 16 independent GEMMs, which is what makes it fast here:

1. ``transform_weight`` (once per weight change: the inference plan calls it from ``refresh``):
   U (16, Cin, Cout), computed in float64 and rounded once (by the Numba kernel training uses too).
2. ``_input_transform_2`` (parallel numba): V (16, tiles, Cin) for a chunk of tile rows; taps in the padding
   read as zero, so any padding, asymmetric included, works.
3. 16 GEMMs (tiles x Cin) . (Cin x Cout), stacked, by pool_gemm.py (OpenBLAS's sgemm from Numba's threads).
4. ``_output_transform_2`` (parallel numba): Y = A^T M A per tile plus bias and relu, written into ``out`` (which
   may be a channel slice of a concat buffer); tiles that overhang an odd output edge write only their valid
   pixels. tanh and sigmoid follow as NumPy ufuncs (see epilogue.py).

The work is chunked over rows of tiles so that V and M (the GEMM outputs) stay about ``COL_BUDGET`` bytes, like
the im2col column buffer, and both live in the caller's :class:`~runtime.kernels.conv.ConvWorkspace` (so the
inference plan's shared scratch counts them).

With U as panels and at most FUSED_MAX_CHANNELS channels each side, whole vectors of them, the forward runs block
by block instead (``_fused_forward``, one parallel region): each thread transforms pointwise.py's ROWS tiles into
its own V (winograd_tile.py's vector code), runs the 16 GEMMs on them, and transforms their M to the output, before
the next block, so V and M never leave the core's caches. Same
arithmetic, same order: bitwise the chunked path's result. Batch 64, 2 threads, AVX-512 Zen 4, alternating calls,
medians, chunked -> block by block: 64 channels at 8x8 1.60 -> 1.21 ms, at 32x32 19.3 -> 13.9; 128 at 16x16 17.3
-> 11.5; 256 at 8x8 12.9 -> 11.1; 512 at 4x4 11.1 -> 11.4, and on a second day 12.08 -> 12.07, at batch 8 512 at
7x7 8.22 -> 8.11, 160 -> 320 at 14x14 4.07 -> 3.64, 384 at 13x13 10.59 -> 9.70: so up to 512 channels, which spares
inference the chunked kernels' compiling wherever its channels are whole vectors (``cnnlang run resnet18``'s first
pass compiled 53 s of kernels, now 36). Whole steps and forwards, same machine, one process, the two paths taking
turns: resnet20's training step 1.11x (median of 7 rounds, 0.92-1.18), ResNet-18 CIFAR's 1.17x (1.10-1.21),
inference at batch 8 ResNet-50 1.07x, GoogLeNet 1.2x, VGG-16 1.14x, ResNet-18 1.26x.

F(2x2)'s matrices hold only 0, +-1 and 1/2, and its float32 error measured 0.6-1.6x im2col's
(tests/runtime/kernels/test_kernel_winograd.py). F(4x4, 3x3) was tried and removed: its matrices hold up to 8 (A)
and 5 (B), its error measured 10-30x im2col's, and it was no faster than F(2x2) on most of ResNet-50's shapes
here (docs/passes.md).

Training (conv.py calls these when workspace.py's rule says so; the weight changes every step):

* ``transform_weight_into``: U in the parallel numba kernel that ``transform_weight`` uses too, or, with
  ``flip``, U of the input gradient's weight (filters turned by 180 degrees, channels swapped), so that dx =
  ``winograd_forward`` of dy padded by 2 - p. Its planes may lie ``padded`` apart (one cache line more than Cin *
  Cout): a multiple of 4 KiB apart, the 16 store streams shared one L1 set (4-4.5x the time, 64 to 512 channels).
* conv.py hands the forward and dx their U packed for pointwise.py's tile (``panels``), as inference does:
  resnet20's 64-channel 8x8 layer at batch 64, forward + dx, one thread, CPU time 8.93 -> 8.16 ms (1.09x); two
  threads on a loaded machine 1.34x (the OpenBLAS hand-off gone). Where the GEMMs' N is whole panels,
  ``transform_weight_panels_into`` writes the panels directly, vectorised over a panel's lanes (no U, no packing
  copy): transform + pack of a 512 x 512 weight, one thread, CPU time, 23.7 -> 5.8 ms (dx's turned one 31.0 ->
  5.1), 256 x 256 4.6 -> 1.25 (7.4 -> 1.3) ms. Elsewhere, the padded U and stacked_panels_into.
* ``winograd_weight_grad``: dW = G^T dU G with dU the sum over tiles of V^T dM, computed as dU^T = sum of dM^T V
  so that the final transform (``_weight_grad_transform``) reads dU in the weight's own (Cout, Cin) order (512 x
  512, one thread: 17.5 -> 7.2 ms). V is the forward's input transform and dM = A dY A^T (``_output_adjoint_2``,
  the adjoint of the output transform): 16 GEMMs (Cout x tiles) . (tiles x Cin).

Per-tile costs, which dominate at 16 to 64 channels (a tile's channel loops are 2 to 8 vectors long):

* The transforms are compiled with ``_nrt=False`` (no reference counting, so no allocation: their scratch rows come
  from the caller, ``_per_block``). With it, every slice view taken per tile incremented and decremented an atomic
  reference count, 20 to 60 atomic operations per tile; without it the output transform measured 1.5-1.8x faster
  in isolation (one thread, batch 64: 16 channels 32x32 3.1 -> 2.1 ms, 32 at 16x16 0.65 -> 0.36 ms).
* The input transform runs as 4 + 16 loops of 2 loads and 1 store each (B^T d row by row, then each plane of
  (B^T d) B), since one loop over all 16 outputs of a channel compiled to scalar code (LLVM gives up on checking
  its 16 output and 16 input streams for overlap): in isolation 1.2x (16 channels) to 2x (64) faster.
  Whole forward, one thread, CPU time, batch 64 (resnet20's layers): 16 channels 1.26x, 32 1.2x, 64 1.03-1.15x;
  the weight gradient 1.07-1.17x.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .workspace import COL_BUDGET, DEFAULT_WORKSPACE, ConvWorkspace
from .epilogue import NONE, RELU, bias_activation, channel_rows, row_span
from .llvm_vectors import HOST_VECTOR_BYTES as _VECTOR_BYTES
from .winograd_tile import VECTOR_BYTES as TILE_VECTOR_BYTES
from .winograd_tile import input_tile, output_tile
from .pointwise import ROWS, gemm_task, panel_width, panels_size, stacked_gemm, thread_scratch
from .pool_gemm import matmul

#: ... but a chunk has at least this many tiles: each stacked GEMM repacks all of U.
MIN_CHUNK_TILES = 512
#: With panels, layers of at most this many channels each side, whole vectors of them, run block by block
#: (_fused_forward; see the top).
FUSED_MAX_CHANNELS = 512
_BLOCK = 16  # tiles per parallel work item (one scratch allocation each)
_PLANES = 16  # (2 + 2)^2: one GEMM per position in the 4x4 transformed tile
_PLANE_PAD = 16  # elements between transform_weight_into's padded planes beyond Cin * Cout (one 64-byte line or two)

# Interpolation points 0, +-1 and infinity: the only ones whose matrices hold nothing but 0, +-1 and 1/2.
_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)

# Indices into the geometry vector handed to the numba kernels.
_H, _W, _C, _HO, _WO, _O, _PT, _PL, _TH, _TW = range(10)


def matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) of F(2x2, 3x3), float64; the kernels hard-code them, the tests check against them."""
    return _BT, _G, _AT


def transform_weight(weight: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """U = G g G^T for every (output, input) channel pair of ``weight`` (Cout, Cin, 3, 3), laid out (16, Cin, Cout)
    for the GEMMs; computed in float64 and rounded once to ``dtype`` (default: the weight's). By the Numba kernel
    training uses (:func:`transform_weight_into`; it replaced an einsum, 176 ms against under 1 ms for a
    512 x 512 weight), from the weight as given when it is already ``dtype``, else from its float64 copy."""
    if weight.ndim != 4 or weight.shape[2:] != (3, 3):
        raise ValueError(f"winograd: a (Cout, Cin, 3, 3) weight expected, got {weight.shape}")
    target = np.dtype(dtype or weight.dtype)
    source = weight if weight.dtype == target else np.asarray(weight, np.float64)
    u = transform_weight_into(source, np.empty(_PLANES * weight.shape[0] * weight.shape[1], source.dtype))
    return u if u.dtype == target else u.astype(target)


# --------------------------------------------------------------------------- numba kernels
# The transforms written out: a tile's 16 values in registers, one pass over the channels. Element loops over
# slice views, as in conv.py: numba vectorises them, while loops over computed flat indices do not
# (negative-index wraparound checks). Against generic matrix-driven kernels (axpys over channel runs, about 80
# passes over a scratch tile), on ResNet-50's 64-channel 56x56 layer at batch 8 (2 threads): input transform
# 2.4 -> 1.5 ms, output transform 2.8 -> 0.7 ms (the GEMMs: about 5 ms).


@njit(inline="always", _nrt=False)
def _edge_patch(xf, geo, n, ih0, iw0, patch):  # pragma: no cover - compiled
    """patch (4 x 4 x C) = the input patch of image n at (ih0, iw0), zero outside the image."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    for e in range(16 * C):
        patch[e] = 0
    for r in range(4):
        ih = ih0 + r
        if ih < 0 or ih >= H:
            continue
        for s in range(4):
            iw = iw0 + s
            if iw >= 0 and iw < W:
                p = ((n * H + ih) * W + iw) * C
                dst = patch[(r * 4 + s) * C : (r * 4 + s + 1) * C]
                seg = xf[p : p + C]
                for c in range(C):
                    dst[c] = seg[c]


@njit(inline="always", _nrt=False)
def _inside(geo, ih0, iw0):  # pragma: no cover - compiled
    """Whether the 4 x 4 input patch at (ih0, iw0) lies inside the image."""
    return ih0 >= 0 and ih0 + 4 <= geo[_H] and iw0 >= 0 and iw0 + 4 <= geo[_W]


@njit(inline="always", _nrt=False)
def _input_tile(xf, geo, n, ih0, iw0, v, q, plane, patch, rows):  # pragma: no cover - compiled
    """One tile's V = B^T d B: d the 4 x 4 input patch of image n at (ih0, iw0), zero outside the image; position
    i of the transformed tile into v[q + i*plane : ... + C]. ``patch`` (16 * C): an edge tile's input; ``rows``
    (16 * C): B^T d."""
    H, W, C = geo[_H], geo[_W], geo[_C]
    if _inside(geo, ih0, iw0):
        src = xf
        o = ((n * H + ih0) * W + iw0) * C
        rs = W * C
    else:
        _edge_patch(xf, geo, n, ih0, iw0, patch)
        src = patch
        o = 0
        rs = 4 * C
    c4 = 4 * C
    d0, d1 = src[o : o + c4], src[o + rs : o + rs + c4]
    d2, d3 = src[o + 2 * rs : o + 2 * rs + c4], src[o + 3 * rs : o + 3 * rs + c4]
    # B^T d into rows: one row of the tile (4 pixels x C, contiguous) per loop, then (B^T d) B one output plane
    # per loop: each loop has 2 loads and 1 store, few enough streams for LLVM's overlap checks, so each
    # vectorises (one loop over all 16 outputs stayed scalar).
    r0, r1, r2, r3 = rows[:c4], rows[c4 : 2 * c4], rows[2 * c4 : 3 * c4], rows[3 * c4 :]
    for j in range(c4):
        r0[j] = d0[j] - d2[j]
    for j in range(c4):
        r1[j] = d1[j] + d2[j]
    for j in range(c4):
        r2[j] = d2[j] - d1[j]
    for j in range(c4):
        r3[j] = d1[j] - d3[j]
    for r in range(4):
        tr = rows[r * c4 : (r + 1) * c4]
        a0, a1, a2, a3 = tr[:C], tr[C : 2 * C], tr[2 * C : 3 * C], tr[3 * C :]
        p = q + 4 * r * plane
        v0, v1 = v[p : p + C], v[p + plane : p + plane + C]
        v2, v3 = v[p + 2 * plane : p + 2 * plane + C], v[p + 3 * plane : p + 3 * plane + C]
        for c in range(C):
            v0[c] = a0[c] - a2[c]
        for c in range(C):
            v1[c] = a1[c] + a2[c]
        for c in range(C):
            v2[c] = a2[c] - a1[c]
        for c in range(C):
            v3[c] = a1[c] - a3[c]


@njit(parallel=True, cache=True, _nrt=False)
def _input_transform_2(xf, v, plane, geo, row0, nrows, patches):  # pragma: no cover - compiled
    """V (16 planes ``plane`` apart, each nrows*TW x C) = B^T d B for the tiles of tile rows [row0, row0 + nrows)
    (flattened n*TH + ti); d is the 4 x 4 input patch at (2*ti - pt, 2*tj - pl), zero outside the image.
    ``patches`` (blocks of _BLOCK tiles, 32 * C): each block's copy of an edge tile's input, then its B^T d."""
    C = geo[_C]
    pt, pl, th, tw = geo[_PT], geo[_PL], geo[_TH], geo[_TW]
    nt = nrows * tw
    nblk = (nt + _BLOCK - 1) // _BLOCK
    for b in prange(nblk):
        patch = patches[b, : 16 * C]
        rows = patches[b, 16 * C :]
        for t in range(b * _BLOCK, min(nt, (b + 1) * _BLOCK)):
            row = row0 + t // tw
            _input_tile(xf, geo, row // th, (row % th) * 2 - pt, (t % tw) * 2 - pl, v, t * C, plane, patch, rows)


@njit(inline="always", _nrt=False)
def _tile_planes(mb, q, plane, O):  # pragma: no cover - compiled
    """The 16 positions of one tile's M (or dM), each O values: mb[q + i*plane : ... + O] for i < 16."""
    return (mb[q : q + O], mb[q + plane : q + plane + O], mb[q + 2 * plane : q + 2 * plane + O],
            mb[q + 3 * plane : q + 3 * plane + O], mb[q + 4 * plane : q + 4 * plane + O],
            mb[q + 5 * plane : q + 5 * plane + O], mb[q + 6 * plane : q + 6 * plane + O],
            mb[q + 7 * plane : q + 7 * plane + O], mb[q + 8 * plane : q + 8 * plane + O],
            mb[q + 9 * plane : q + 9 * plane + O], mb[q + 10 * plane : q + 10 * plane + O],
            mb[q + 11 * plane : q + 11 * plane + O], mb[q + 12 * plane : q + 12 * plane + O],
            mb[q + 13 * plane : q + 13 * plane + O], mb[q + 14 * plane : q + 14 * plane + O],
            mb[q + 15 * plane : q + 15 * plane + O])


@njit(inline="always", _nrt=False)
def _tile_pixels(yf, p, stride, Wo, O, right, down, outside):  # pragma: no cover - compiled
    """The channels (O values) of a tile's 2 x 2 output pixels, pixel p its top left, pixels ``stride`` values
    apart, rows Wo pixels; a pixel past the right or bottom edge gets ``outside`` instead."""
    y00 = yf[p * stride : p * stride + O]
    y01 = yf[(p + 1) * stride : (p + 1) * stride + O] if right else outside
    y10 = yf[(p + Wo) * stride : (p + Wo) * stride + O] if down else outside
    y11 = yf[(p + Wo + 1) * stride : (p + Wo + 1) * stride + O] if right and down else outside
    return y00, y01, y10, y11


@njit(inline="always", error_model="numpy", _nrt=False)
def _output_tile(mb, q, plane, yf, ystride, geo, n, oh, ow, bias, relu, spare):  # pragma: no cover - compiled
    """One tile's output pixels at (oh, ow) of image n = A^T M A + bias (then relu), M's position i at
    mb[q + i*plane : ... + O]; pixel p's channels are yf[p*ystride : p*ystride + O]; pixels past an odd output
    edge go to ``spare`` (O)."""
    Ho, Wo, O = geo[_HO], geo[_WO], geo[_O]
    zero = yf.dtype.type(0)
    (m00, m01, m02, m03, m10, m11, m12, m13,
     m20, m21, m22, m23, m30, m31, m32, m33) = _tile_planes(mb, q, plane, O)
    y00, y01, y10, y11 = _tile_pixels(yf, (n * Ho + oh) * Wo + ow, ystride, Wo, O, ow + 1 < Wo, oh + 1 < Ho, spare)
    for c in range(O):
        # A^T M: rows (m0 + m1 + m2, m1 - m2 - m3), per column
        s00, s01 = m00[c] + m10[c] + m20[c], m01[c] + m11[c] + m21[c]
        s02, s03 = m02[c] + m12[c] + m22[c], m03[c] + m13[c] + m23[c]
        s10, s11 = m10[c] - m20[c] - m30[c], m11[c] - m21[c] - m31[c]
        s12, s13 = m12[c] - m22[c] - m32[c], m13[c] - m23[c] - m33[c]
        bc = bias[c]
        r00 = s00 + s01 + s02 + bc
        r01 = s01 - s02 - s03 + bc
        r10 = s10 + s11 + s12 + bc
        r11 = s11 - s12 - s13 + bc
        if relu:
            r00 = r00 if (r00 > zero or r00 != r00) else zero
            r01 = r01 if (r01 > zero or r01 != r01) else zero
            r10 = r10 if (r10 > zero or r10 != r10) else zero
            r11 = r11 if (r11 > zero or r11 != r11) else zero
        y11[c] = r11
        y10[c] = r10
        y01[c] = r01
        y00[c] = r00


@njit(parallel=True, cache=True, error_model="numpy", _nrt=False)
def _output_transform_2(mb, plane, yf, ystride, geo, bias, relu, row0, nrows, spares):  # pragma: no cover - compiled
    """Output pixels of the tiles of tile rows [row0, row0 + nrows) = A^T M A + bias (then relu) from mb (16 planes
    ``plane`` apart, each nrows*TW x O); pixel p's channels are yf[p*ystride : p*ystride + O]. ``bias`` is always
    given (zeros for none), so the inner loop has no branch on it. ``spares`` (blocks of _BLOCK tiles, O): where a
    block's edge tiles write their pixels outside the output."""
    O = geo[_O]
    th, tw = geo[_TH], geo[_TW]
    nt = nrows * tw
    nblk = (nt + _BLOCK - 1) // _BLOCK
    for b in prange(nblk):
        spare = spares[b]
        for t in range(b * _BLOCK, min(nt, (b + 1) * _BLOCK)):
            row = row0 + t // tw
            _output_tile(mb, t * O, plane, yf, ystride, geo, row // th, (row % th) * 2, (t % tw) * 2, bias, relu,
                         spare)


@njit(cache=True, _nrt=False)
def _edge_patch_call(xf, geo, n, ih0, iw0, patch):  # pragma: no cover - compiled
    """_edge_patch as a call (see _fused_forward)."""
    _edge_patch(xf, geo, n, ih0, iw0, patch)


@njit(cache=True, error_model="numpy", _nrt=False)
def _output_tile_call(mb, q, plane, yf, ystride, geo, n, oh, ow, bias, relu, spare):  # pragma: no cover - compiled
    """_output_tile as a call (see _fused_forward)."""
    _output_tile(mb, q, plane, yf, ystride, geo, n, oh, ow, bias, relu, spare)


@njit(parallel=True, cache=True, error_model="numpy", _nrt=False)
def _fused_forward(xf, panels, yf, ystride, geo, tiles, bias, relu, zeros, scratch):  # pragma: no cover - compiled
    """The whole forward block by block, each block's V and M in its thread's ``scratch`` row: ROWS tiles'
    input transforms (V: 16 planes of ROWS x C), the 16 GEMMs by pointwise.py's tile (M: 16 planes of ROWS x O),
    their output transforms, before the next block. ``tiles``: N * TH * TW; blocks in contiguous ranges over
    the threads; ``zeros``: the GEMMs' bias, zeros over whole panels; ``bias``: the output transform's (O).
    C and O whole vectors of winograd_tile.py's width, whose transforms take the tiles inside the image (input)
    and the output (output); the edge tiles' copies and output go through calls (inlined, with the loop
    transforms for other channel counts, the kernel took 30 s to compile, now 10)."""
    H, W, C, Ho, Wo, O = geo[_H], geo[_W], geo[_C], geo[_HO], geo[_WO], geo[_O]
    pt, pl, th, tw = geo[_PT], geo[_PL], geo[_TH], geo[_TW]
    VO = 2 * (_VECTOR_BYTES // xf.itemsize)
    NB = (O + VO - 1) // VO
    pplane = panels.size // _PLANES
    vplane, mplane = ROWS * C, ROWS * O
    blocks = (tiles + ROWS - 1) // ROWS
    T = scratch.shape[0]
    for t in prange(T):
        row = scratch[t]
        v = row[: _PLANES * vplane]
        m = row[_PLANES * vplane : _PLANES * (vplane + mplane)]
        e = _PLANES * (vplane + mplane)
        patch, rows = row[e : e + 16 * C], row[e + 16 * C : e + 32 * C]
        spare, part = row[e + 32 * C : e + 32 * C + O], row[e + 32 * C + O : e + 32 * C + O + ROWS * VO]
        for b in range(t * blocks // T, (t + 1) * blocks // T):
            first = b * ROWS
            count = min(ROWS, tiles - first)
            for i in range(count):
                k = first + i
                r = k // tw
                n, ih0, iw0 = r // th, (r % th) * 2 - pt, (k % tw) * 2 - pl
                if _inside(geo, ih0, iw0):
                    input_tile(xf, ((n * H + ih0) * W + iw0) * C, W * C, v, i * C, vplane, C)
                else:
                    _edge_patch_call(xf, geo, n, ih0, iw0, patch)
                    input_tile(patch, 0, 4 * C, v, i * C, vplane, C)
            for q in range(_PLANES):
                for nb in range(NB):
                    gemm_task(v, vplane, C, panels, pplane, zeros, False, zeros, 0, False, m, mplane, O, O, C, 1,
                              count, q, nb, part)
            for i in range(count):
                k = first + i
                r = k // tw
                n, oh, ow = r // th, (r % th) * 2, (k % tw) * 2
                if oh + 1 < Ho and ow + 1 < Wo:
                    output_tile(m, i * O, mplane, bias, relu, yf, ((n * Ho + oh) * Wo + ow) * ystride, ystride, Wo, O)
                else:
                    _output_tile_call(m, i * O, mplane, yf, ystride, geo, n, oh, ow, bias, relu, spare)


def _fused_scratch_size(C: int, O: int, dtype: np.dtype) -> int:
    """Elements of one thread's row of :func:`_fused_forward`'s scratch."""
    return _PLANES * ROWS * (C + O) + 32 * C + O + ROWS * panel_width(dtype)


@njit(parallel=True, cache=True, _nrt=False)
def _transform_weight(w, u, C, O, flip, plane):  # pragma: no cover - compiled
    """U = G g G^T of every 3x3 filter g of w (O, C, 3, 3), flat, into u (16, C, O), flat, its planes ``plane``
    (>= C * O) elements apart; with ``flip`` the filter turned by 180 degrees into u (16, O, C): the weight of the
    input gradient's convolution (input channels O). In float64, rounded once (an einsum took 176 ms for a 512 x 512
    weight). Scalars throughout, no scratch (a 12-element array per filter and a tuple per row: 17.0 ms for 512 x
    512 on one thread, 15.8 ms then). Planes a multiple of 4 KiB apart put the 16 store streams in one L1 set:
    _PLANE_PAD more apart, resnet20's 64 x 64 weight took 0.086 instead of 0.224 ms (one thread, CPU time)."""
    for c in prange(C):
        for o in range(O):
            k = (o * C + c) * 9
            if flip:  # g[i][j] = w[2 - i][2 - j]
                g00, g01, g02 = np.float64(w[k + 8]), np.float64(w[k + 7]), np.float64(w[k + 6])
                g10, g11, g12 = np.float64(w[k + 5]), np.float64(w[k + 4]), np.float64(w[k + 3])
                g20, g21, g22 = np.float64(w[k + 2]), np.float64(w[k + 1]), np.float64(w[k])
            else:
                g00, g01, g02 = np.float64(w[k]), np.float64(w[k + 1]), np.float64(w[k + 2])
                g10, g11, g12 = np.float64(w[k + 3]), np.float64(w[k + 4]), np.float64(w[k + 5])
                g20, g21, g22 = np.float64(w[k + 6]), np.float64(w[k + 7]), np.float64(w[k + 8])
            # G g: rows (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)
            t00, t01, t02 = g00, g01, g02
            t10, t11, t12 = 0.5 * (g00 + g10 + g20), 0.5 * (g01 + g11 + g21), 0.5 * (g02 + g12 + g22)
            t20, t21, t22 = 0.5 * (g00 - g10 + g20), 0.5 * (g01 - g11 + g21), 0.5 * (g02 - g12 + g22)
            t30, t31, t32 = g20, g21, g22
            q = o * C + c if flip else c * O + o
            # (G g) G^T: row i is (a, (a + b + d) / 2, (a - b + d) / 2, d) for (a, b, d) = row i of G g
            u[q] = t00
            u[q + plane] = 0.5 * (t00 + t01 + t02)
            u[q + 2 * plane] = 0.5 * (t00 - t01 + t02)
            u[q + 3 * plane] = t02
            u[q + 4 * plane] = t10
            u[q + 5 * plane] = 0.5 * (t10 + t11 + t12)
            u[q + 6 * plane] = 0.5 * (t10 - t11 + t12)
            u[q + 7 * plane] = t12
            u[q + 8 * plane] = t20
            u[q + 9 * plane] = 0.5 * (t20 + t21 + t22)
            u[q + 10 * plane] = 0.5 * (t20 - t21 + t22)
            u[q + 11 * plane] = t22
            u[q + 12 * plane] = t30
            u[q + 13 * plane] = 0.5 * (t30 + t31 + t32)
            u[q + 14 * plane] = 0.5 * (t30 - t31 + t32)
            u[q + 15 * plane] = t32


@njit(parallel=True, cache=True, _nrt=False)
def _transform_weight_panels(w, u, C, O, flip, width, scratch):  # pragma: no cover - compiled
    """:func:`_transform_weight`'s U (the same float64 arithmetic, rounded once) stored straight in
    pointwise.stacked_panels' layout: plane i of (K, N) = (C, O), or (O, C) with ``flip``, at i*C*O, as N / width
    panels of (K, width). Work items are panels of N; per row k of a panel, the width filters' taps are gathered into
    scratch (9 x width, float64) and transformed as loops over the lanes, which LLVM vectorises: one filter at a
    time in scalars, as _transform_weight, took 2-3x as long (512 x 512: 13.6 against 7.5 ms, 256 x 256: 3.5
    against 1.2 ms, one thread). ``scratch``: (N / width, 21 * width) float64."""
    plane = C * O
    K, N = (O, C) if flip else (C, O)
    for nb in prange(N // width):
        g = scratch[nb, : 9 * width]  # tap t of lane j at t * width + j
        t = scratch[nb, 9 * width : 21 * width]  # G g: row i, column l of lane j at (3 * i + l) * width + j
        for k in range(K):
            for j in range(width):
                n = nb * width + j
                f = (k * C + n) * 9 if flip else (n * C + k) * 9
                for tap in range(9):  # flip: g[i][l] = w[2 - i][2 - l]
                    g[tap * width + j] = np.float64(w[f + 8 - tap]) if flip else np.float64(w[f + tap])
            # G g: rows (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)
            for l in range(3):
                a, b = g[l * width : (l + 1) * width], g[(3 + l) * width : (4 + l) * width]
                d = g[(6 + l) * width : (7 + l) * width]
                t0, t1 = t[l * width : (l + 1) * width], t[(3 + l) * width : (4 + l) * width]
                t2, t3 = t[(6 + l) * width : (7 + l) * width], t[(9 + l) * width : (10 + l) * width]
                for j in range(width):
                    t0[j] = a[j]
                    t1[j] = 0.5 * (a[j] + b[j] + d[j])
                    t2[j] = 0.5 * (a[j] - b[j] + d[j])
                    t3[j] = d[j]
            # (G g) G^T: row i is (a, (a + b + d) / 2, (a - b + d) / 2, d) for (a, b, d) = row i of G g
            base = nb * K * width + k * width
            for i in range(4):
                r = 3 * i * width
                a, b, d = t[r : r + width], t[r + width : r + 2 * width], t[r + 2 * width : r + 3 * width]
                q = base + 4 * i * plane
                u0, u1 = u[q : q + width], u[q + plane : q + plane + width]
                u2, u3 = u[q + 2 * plane : q + 2 * plane + width], u[q + 3 * plane : q + 3 * plane + width]
                for j in range(width):
                    u0[j] = a[j]
                    u1[j] = 0.5 * (a[j] + b[j] + d[j])
                    u2[j] = 0.5 * (a[j] - b[j] + d[j])
                    u3[j] = d[j]


@njit(parallel=True, cache=True, _nrt=False)
def _output_adjoint_2(dyf, mb, plane, geo, row0, nrows, zeros):  # pragma: no cover - compiled
    """The adjoint of the output transform, for the weight gradient: dM = A dY A^T per tile of tile rows
    [row0, row0 + nrows) into mb (16 planes ``plane`` apart, each nrows*TW x O), from dy (N, Ho, Wo, O), flat; a
    tile's pixels outside an odd output edge count as zero (read from ``zeros``, O zeros)."""
    Ho, Wo, O = geo[_HO], geo[_WO], geo[_O]
    th, tw = geo[_TH], geo[_TW]
    nt = nrows * tw
    nblk = (nt + _BLOCK - 1) // _BLOCK
    for b in prange(nblk):
        for t in range(b * _BLOCK, min(nt, (b + 1) * _BLOCK)):
            row = row0 + t // tw
            n = row // th
            oh = (row % th) * 2
            ow = (t % tw) * 2
            p = (n * Ho + oh) * Wo + ow
            y00, y01, y10, y11 = _tile_pixels(dyf, p, O, Wo, O, ow + 1 < Wo, oh + 1 < Ho, zeros)
            (m00, m01, m02, m03, m10, m11, m12, m13,
             m20, m21, m22, m23, m30, m31, m32, m33) = _tile_planes(mb, t * O, plane, O)
            for c in range(O):
                # Z = dY A^T: row a is (y_a0, y_a0 + y_a1, y_a0 - y_a1, -y_a1); dM = A Z: rows (z0, z0 + z1, z0 - z1, -z1)
                a0, a1, b0, b1 = y00[c], y01[c], y10[c], y11[c]
                z00, z01, z02, z03 = a0, a0 + a1, a0 - a1, -a1
                z10, z11, z12, z13 = b0, b0 + b1, b0 - b1, -b1
                m00[c], m01[c], m02[c], m03[c] = z00, z01, z02, z03
                m10[c], m11[c], m12[c], m13[c] = z00 + z10, z01 + z11, z02 + z12, z03 + z13
                m20[c], m21[c], m22[c], m23[c] = z00 - z10, z01 - z11, z02 - z12, z03 - z13
                m30[c], m31[c], m32[c], m33[c] = -z10, -z11, -z12, -z13


@njit(parallel=True, cache=True, _nrt=False)
def _weight_grad_transform(du, dw, C, O):  # pragma: no cover - compiled
    """dW = G^T dU G (the adjoint of U = G g G^T) for every channel pair: du (16, O, C) -> dw (O, C, 3, 3), both
    flat, in float64, rounded once. dU laid out (O, C) per plane, so that both the 16 read streams and the writes
    run forward in c (as (C, O), read across O, 512 x 512 took 18.0 ms on one thread)."""
    plane = C * O
    for o in prange(O):
        for c in range(C):
            q = o * C + c
            # G^T dU: 3 rows of 4, column j from dU's column j (planes j, 4 + j, 8 + j, 12 + j)
            u0, u1 = np.float64(du[q]), np.float64(du[q + 4 * plane])
            u2, u3 = np.float64(du[q + 8 * plane]), np.float64(du[q + 12 * plane])
            t00, t10, t20 = u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3
            u0, u1 = np.float64(du[q + plane]), np.float64(du[q + 5 * plane])
            u2, u3 = np.float64(du[q + 9 * plane]), np.float64(du[q + 13 * plane])
            t01, t11, t21 = u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3
            u0, u1 = np.float64(du[q + 2 * plane]), np.float64(du[q + 6 * plane])
            u2, u3 = np.float64(du[q + 10 * plane]), np.float64(du[q + 14 * plane])
            t02, t12, t22 = u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3
            u0, u1 = np.float64(du[q + 3 * plane]), np.float64(du[q + 7 * plane])
            u2, u3 = np.float64(du[q + 11 * plane]), np.float64(du[q + 15 * plane])
            t03, t13, t23 = u0 + 0.5 * (u1 + u2), 0.5 * (u1 - u2), 0.5 * (u1 + u2) + u3
            g = q * 9
            dw[g] = t00 + 0.5 * (t01 + t02)
            dw[g + 1] = 0.5 * (t01 - t02)
            dw[g + 2] = 0.5 * (t01 + t02) + t03
            dw[g + 3] = t10 + 0.5 * (t11 + t12)
            dw[g + 4] = 0.5 * (t11 - t12)
            dw[g + 5] = 0.5 * (t11 + t12) + t13
            dw[g + 6] = t20 + 0.5 * (t21 + t22)
            dw[g + 7] = 0.5 * (t21 - t22)
            dw[g + 8] = 0.5 * (t21 + t22) + t23


def transform_weight_into(weight: np.ndarray, out: np.ndarray, flip: bool = False, padded: bool = False) -> np.ndarray:
    """:func:`transform_weight` of ``weight`` (Cout, Cin, 3, 3) into ``out`` (16 * Cin * Cout elements, the
    weight's dtype), as (16, Cin, Cout); with ``flip``, of the input gradient's weight (the filters turned by 180
    degrees, input and output channels swapped), as (16, Cout, Cin). For training, where the weight changes
    every step. ``padded``: ``out`` has :func:`padded_u_size` elements and the planes lie that far apart (a
    strided view is returned), out of each other's cache sets."""
    o, c = weight.shape[:2]
    plane = o * c + (_PLANE_PAD if padded else 0)
    _transform_weight(np.ascontiguousarray(weight).reshape(-1), out, c, o, flip, plane)
    planes = out[: _PLANES * plane].reshape(_PLANES, plane)[:, : o * c]
    return planes.reshape((_PLANES, o, c) if flip else (_PLANES, c, o))


def padded_u_size(weight_size: int) -> int:
    """Elements of transform_weight_into's ``out`` with ``padded``, for a (Cout, Cin, 3, 3) weight of this size."""
    return _PLANES * (weight_size // 9 + _PLANE_PAD)


def transform_weight_panels_into(weight: np.ndarray, out: np.ndarray, flip: bool = False,
                                 scratch: np.ndarray | None = None) -> np.ndarray | None:
    """:func:`transform_weight_into`'s U (with ``flip``, the input gradient's) already packed as
    pointwise.stacked_panels (``panels`` for :func:`winograd_forward`), into ``out`` (16 * Cin * Cout elements): one
    pass instead of the transform plus a packing copy. None when the GEMMs' N (Cout, or Cin with ``flip``) is not
    whole panels: then transform, and pack with stacked_panels. ``scratch``: at least 21 * N float64 elements
    (allocated when None)."""
    o, c = weight.shape[:2]
    width = panel_width(weight.dtype)
    n = c if flip else o
    if n % width:
        return None
    need = panel_scratch_size(weight.shape, flip)
    scratch = np.empty(need) if scratch is None else scratch[:need]
    _transform_weight_panels(np.ascontiguousarray(weight).reshape(-1), out, c, o, flip, width,
                             scratch.reshape(n // width, 21 * width))
    return out[: _PLANES * c * o]


def panel_scratch_size(weight_shape: tuple[int, ...], flip: bool = False) -> int:
    """float64 elements of :func:`transform_weight_panels_into`'s scratch for a (Cout, Cin, 3, 3) weight."""
    return 21 * weight_shape[0 if not flip else 1]


# --------------------------------------------------------------------------- public API


def chunk_rows(tile_cols: int, planes: int, channels: int, itemsize: int, budget: int = COL_BUDGET) -> int:
    """Tile rows per chunk: V and M together about ``budget`` bytes, at least MIN_CHUNK_TILES tiles."""
    per_row = planes * tile_cols * channels * itemsize
    return max(budget // max(per_row, 1), -(-MIN_CHUNK_TILES // tile_cols), 1)


def winograd_forward(
    x: np.ndarray,
    transformed: np.ndarray | None,
    bias: np.ndarray | None,
    pads: tuple[tuple[int, int], tuple[int, int]],
    out: np.ndarray,
    workspace: ConvWorkspace | None = None,
    activation: int = NONE,
    panels: np.ndarray | None = None,
) -> np.ndarray:
    """out (N, Ho, Wo, Cout) = f(conv3x3(x (N, H, W, Cin)) + bias), stride 1, no dilation or groups.

    ``transformed`` is :func:`transform_weight`'s U; ``pads`` is ((top, bottom), (left, right)); ``activation`` an
    epilogue code (NONE, RELU, TANH, SIGMOID). ``out`` is overwritten and may be a channel slice of a larger
    channels-last array. The same contract as :func:`runtime.kernels.conv.conv2d_forward` for these layers.
    ``panels``: U as pointwise.stacked_panels: the 16 GEMMs then run on pointwise.py's register tile in Numba's
    pool instead of BLAS (no hand-off between the pools; GoogLeNet's Winograd GEMMs alone, one thread, CPU time:
    0.98-1.14x, 1.06x in all; two threads on a loaded machine 1.14-1.84x and far steadier). ``transformed`` may
    be None when ``panels`` are given (the inference plan keeps only the panels; training's
    :func:`transform_weight_panels_into` writes no U)."""
    ws = workspace if workspace is not None else DEFAULT_WORKSPACE
    dtype = x.dtype
    if transformed is None:  # the panels only (inference, transform_weight_panels_into): U's shape from x and out
        if panels is None or panels.size != _PLANES * panels_size(out.shape[-1], x.shape[-1], panels.dtype):
            raise ValueError("winograd: without U, the panels of a (16, Cin, Cout) U are needed")
        transformed = panels[:0].reshape(_PLANES, 0, 0)
        planes, cin, O = _PLANES, x.shape[-1], out.shape[-1]
    else:
        planes, cin, O = transformed.shape
    if dtype not in (np.float32, np.float64) or transformed.dtype != dtype or out.dtype != dtype:
        raise TypeError(f"winograd: one float dtype expected, got {dtype}, {transformed.dtype}, {out.dtype}")
    if bias is not None and bias.dtype != dtype:
        raise TypeError(f"winograd: bias is {bias.dtype}, not {dtype}")
    x = np.ascontiguousarray(x)
    N, H, W, C = x.shape
    if planes != _PLANES:
        raise ValueError(f"winograd: {planes} planes is not F(2x2, 3x3)'s {_PLANES}")
    (pt, pb), (pl, pr) = ((int(p), int(q)) for p, q in pads)
    Ho, Wo = H + pt + pb - 2, W + pl + pr - 2
    if cin != C or min(pt, pb, pl, pr) < 0 or Ho < 1 or Wo < 1 or out.shape != (N, Ho, Wo, O):
        raise ValueError(f"winograd: x {x.shape}, weight {transformed.shape}, pads {pads}, out {out.shape} do not fit")
    rows_view = channel_rows(out, O, "winograd")
    flat, stride = row_span(rows_view)
    if N == 0:
        return out
    th, tw = -(-Ho // 2), -(-Wo // 2)
    geo = np.array([H, W, C, Ho, Wo, O, pt, pl, th, tw], np.int64)
    bias_or_zero = bias if bias is not None else np.zeros(O, dtype)
    lanes = TILE_VECTOR_BYTES // x.itemsize
    if panels is not None and max(C, O) <= FUSED_MAX_CHANNELS and C % lanes == 0 and O % lanes == 0:
        threads = numba.get_num_threads()
        size = _fused_scratch_size(C, O, dtype)
        zeros = ws.get("winograd_zeros", -(-O // panel_width(dtype)) * panel_width(dtype), dtype)
        zeros[:] = 0
        scratch = ws.get("winograd_fused", threads * size, dtype).reshape(threads, size)
        _fused_forward(x.reshape(-1), panels, flat, stride, geo, N * th * tw, bias_or_zero, activation == RELU, zeros,
                       scratch)
        if activation not in (NONE, RELU):
            bias_activation(rows_view, None, activation)
        return out
    rows = N * th
    chunk = min(rows, chunk_rows(tw, planes, C + O, x.itemsize, ws.budget))
    v = ws.get("winograd_v", planes * _plane(chunk * tw * C, x.itemsize), dtype)
    mb = ws.get("winograd_m", planes * _plane(chunk * tw * O, x.itemsize), dtype)
    patches = _per_block(ws, "winograd_patch", chunk * tw, 32 * C, dtype)
    spares = _per_block(ws, "winograd_spare", chunk * tw, O, dtype)
    xf = x.reshape(-1)
    for r0 in range(0, rows, chunk):
        nr = min(chunk, rows - r0)
        nt = nr * tw
        vplane, mplane = _plane(nt * C, x.itemsize), _plane(nt * O, x.itemsize)
        v1, m1 = v[: planes * vplane], mb[: planes * mplane]
        _input_transform_2(xf, v1, vplane, geo, r0, nr, patches)
        if panels is None:
            matmul(_planes(v1, planes, vplane, nt, C), transformed, out=_planes(m1, planes, mplane, nt, O))
        else:
            tile = ROWS * panel_width(dtype)
            zeros = ws.get("winograd_zeros", O + tile, dtype)  # (the GEMM's bias: none; the output transform adds it)
            zeros[:] = 0
            stacked_gemm(v1, vplane, panels, m1, mplane, planes, nt, O, C, zeros, thread_scratch(ws, dtype))
        _output_transform_2(m1, mplane, flat, stride, geo, bias_or_zero, activation == RELU, r0, nr, spares)
        if activation not in (NONE, RELU):  # tanh, sigmoid: on this chunk's output rows, in cache
            first, last = r0, r0 + nr - 1
            p0 = ((first // th) * Ho + (first % th) * 2) * Wo
            p1 = ((last // th) * Ho + min((last % th) * 2 + 2, Ho)) * Wo
            bias_activation(rows_view[p0:p1], None, activation)
    return out


def _plane(values: int, itemsize: int) -> int:
    """Elements between the planes of V or M: the plane rounded up to 4 KiB plus one cache line, so that plane p
    starts p lines into a page. With planes exactly a multiple of 4 KiB apart (ResNet-50's 64-channel layer: 1008
    tiles x 64 x 4 bytes = 63 pages), the 16 streams of a transform all map to the same L1 cache set and evict each
    other (the input transform measured 7x slower)."""
    page, line = 4096 // itemsize, 64 // itemsize
    return -(-values // page) * page + line


def _per_block(ws: ConvWorkspace, name: str, tiles: int, width: int, dtype: np.dtype) -> np.ndarray:
    """A (blocks of _BLOCK tiles, width) scratch row per parallel work item of a chunk of ``tiles`` tiles: the
    transforms are compiled without numba's reference counting (``_nrt=False``), so they allocate nothing."""
    blocks = -(-tiles // _BLOCK)
    return ws.get(name, blocks * width, dtype).reshape(blocks, width)


def _planes(flat: np.ndarray, planes: int, plane: int, rows: int, cols: int) -> np.ndarray:
    """The (planes, rows, cols) GEMM operand view of a V or M buffer."""
    size = flat.itemsize
    return np.lib.stride_tricks.as_strided(flat, shape=(planes, rows, cols), strides=(plane * size, cols * size, size))


def winograd_weight_grad(
    x: np.ndarray,
    dy: np.ndarray,
    pads: tuple[tuple[int, int], tuple[int, int]],
    dweight: np.ndarray,
    workspace: ConvWorkspace | None = None,
) -> np.ndarray:
    """dweight (Cout, Cin, 3, 3) = the weight gradient of :func:`winograd_forward`'s convolution of x (N, H, W, Cin)
    given dy (N, Ho, Wo, Cout), overwritten: dU^T = sum over tiles of dM^T V per transformed-tile position (16
    GEMMs (Cout x tiles) . (tiles x Cin), 4/9 of the direct method's multiplications), V = B^T d B as in the
    forward, dM = A dY A^T, then dW = G^T dU G."""
    ws = workspace if workspace is not None else DEFAULT_WORKSPACE
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    N, H, W, C = x.shape
    O = dy.shape[3]
    (pt, pb), (pl, pr) = ((int(p), int(q)) for p, q in pads)
    Ho, Wo = H + pt + pb - 2, W + pl + pr - 2
    if dy.shape != (N, Ho, Wo, O) or dweight.shape != (O, C, 3, 3) or not dweight.flags.c_contiguous:
        raise ValueError(f"winograd: x {x.shape}, dy {dy.shape}, pads {pads}, dweight {dweight.shape} do not fit")
    th, tw = -(-Ho // 2), -(-Wo // 2)
    geo = np.array([H, W, C, Ho, Wo, O, pt, pl, th, tw], np.int64)
    rows = N * th
    chunk = min(rows, chunk_rows(tw, _PLANES, C + O, x.itemsize, ws.budget))
    v = ws.get("winograd_v", _PLANES * _plane(chunk * tw * C, x.itemsize), x.dtype)
    mb = ws.get("winograd_m", _PLANES * _plane(chunk * tw * O, x.itemsize), x.dtype)
    # dU as (16, O, C): dM^T V, so that the final transform reads and writes forward (_weight_grad_transform)
    du = ws.get("winograd_du", _PLANES * C * O, x.dtype).reshape(_PLANES, O, C)
    part = ws.get("winograd_dupart", _PLANES * C * O, x.dtype).reshape(_PLANES, O, C) if rows > chunk else None
    patches = _per_block(ws, "winograd_patch", chunk * tw, 32 * C, x.dtype)
    zeros = np.zeros(O, x.dtype)
    xf, dyf = x.reshape(-1), dy.reshape(-1)
    for r0 in range(0, rows, chunk):
        nr = min(chunk, rows - r0)
        nt = nr * tw
        vplane, mplane = _plane(nt * C, x.itemsize), _plane(nt * O, x.itemsize)
        v1, m1 = v[: _PLANES * vplane], mb[: _PLANES * mplane]
        _input_transform_2(xf, v1, vplane, geo, r0, nr, patches)
        _output_adjoint_2(dyf, m1, mplane, geo, r0, nr, zeros)
        mt = _planes(m1, _PLANES, mplane, nt, O).transpose(0, 2, 1)
        if r0 == 0:
            matmul(mt, _planes(v1, _PLANES, vplane, nt, C), out=du)
        else:
            matmul(mt, _planes(v1, _PLANES, vplane, nt, C), out=part)
            du += part
    _weight_grad_transform(du.reshape(-1), dweight.reshape(-1), C, O)
    return dweight
