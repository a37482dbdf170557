"""What a convolution call keeps between calls: the plan of each call shape (geometry vector,
path, chunking) and the scratch buffers (column buffer, repacked weights, dW partials), which
Winograd's kernels share (runtime/kernels/cpu/winograd.py)."""

from __future__ import annotations

from typing import Callable

import numba
import numpy as np

from ...host_arrays import host_empty
from .blocked import blocked_geometry


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
#: In training, the forward's im2col columns are kept for the weight gradient (saving the
#: backward's im2col) when they take at most this many bytes per conv.
KEEP_BUDGET = 32 << 20
#: The direct kernels (direct.py) take stride-1, undilated, ungrouped, non-pointwise convs: the
#: forward when the input has at most this many channels (LeNet-5's c1; 3 channels measured
#: slower than im2col + GEMM), ...
DIRECT_FORWARD_MAX_C = 1
#: ... the weight gradient when Cin * Cout is at most this (LeNet-5's c1, resnet20's 16-channel
#: 3x3 convs; its 32- and 64-channel ones measured faster with im2col + GEMM) and the output
#: rows are at least DIRECT_MIN_WIDTH_PER_TAP * (KW - 1) wide, so that at most 1/8 of the
#: extended rows is unused (LeNet-5's c3, 10 wide for a 5-wide kernel, measured faster with
#: the GEMM on the forward's kept columns).
DIRECT_WEIGHT_MAX_CO = 256
DIRECT_MIN_WIDTH_PER_TAP = 7
#: Winograd F(2x2, 3x3) (winograd.py) in training, for 3x3, stride-1, undilated, ungrouped convs: the forward
#: and the input gradient (a Winograd conv of dy with the turned, transposed weight) when both channel counts
#: are at least WINOGRAD_MIN_C, the weight gradient (in the Winograd domain) when they are at least
#: WINOGRAD_WEIGHT_MIN_C (the direct kernel takes 16 x 16 and measured faster); all three only when the output is
#: at least WINOGRAD_MIN_SIZE pixels each way. Numbers in benchmarks/bench_small_conv.py. ResNet-18 CIFAR's
#: 512-channel 4x4 layers (batch 64, one thread, wall, best of 5, ms, im2col -> Winograd): forward 54.9 -> 40.4, dx
#: 54.8 -> 40.4, dW 54.9 -> 33.5, since the weight transforms write the GEMM panels directly and dW's final
#: transform reads forward (before, its gradients lost and the rule wanted 8x8 for them); 128 and 256 channels
#: at 4x4 alike (dx 3.86 -> 2.78 and 14.4 -> 10.5, dW 3.93 -> 2.53 and 14.3 -> 8.9); ImageNet ResNet-18's 7x7
#: 512-channel layer, batch 32 (CPU time, best of 5): dx 87.0 -> 57.0, dW 86.1 -> 61.4.
WINOGRAD_MIN_C = 16
WINOGRAD_WEIGHT_MIN_C = 32
WINOGRAD_MIN_SIZE = 4
#: The register-blocked kernels (blocked.py) in training, for undilated, ungrouped convs that are not
#: one GEMM already (1x1, or a window over the whole image): forward and weight gradient when the
#: input has at least BLOCKED_MIN_C channels (one channel: direct.py) and the output at most
#: BLOCKED_MAX_O (one 16-lane float32 tile: LeNet-5's c3), and the input gradient; with one input
#: channel (LeNet-5's c1) and stride 1 along W, the forward by its planar kernel.
BLOCKED_MIN_C = 2
BLOCKED_MAX_O = 16
#: ... and the GEMMs of a window over the whole image (one GEMM each way) of at most this many
#: multiply-adds (LeNet-5's c5 at batch 64: 3.1 M), with blocked.py's GEMM instead of BLAS's.
BLOCKED_GEMM_MAX_MACS = 1 << 23
#: The wider register-blocked kernels (blocked_wide.py, 6 x 16 float32 tiles) in training, for undilated,
#: ungrouped convs that are not one GEMM already, with at least WIDE_MIN_C channels each side and a zero-padded
#: input image of at most WIDE_MAX_IMAGE elements (the weight gradient sweeps it once per tile: ResNet-18 CIFAR's
#: 64 channels at 32x32, 74 k, 296 kB in float32, measured 1.25x slower than Winograd's): the forward with at
#: most WIDE_FORWARD_MAX_C input and WIDE_MAX_C output channels, the input gradient (stride 1; a forward the
#: other way round) with at most WIDE_FORWARD_MAX_C output and WIDE_MAX_C input channels, the weight gradient up
#: to WIDE_MAX_C each side. One thread, CPU time, batch 64, against the kernels they replace (resnet20's 3x3
#: convs): forward and dx 2.1x Winograd's at 16 channels, 1.2x at 32 (at 64 on 8x8, Winograd's 2.25x fewer
#: multiply-adds win: 6.4 against 4.7 ms); stride 2 forward 1.7x (16 -> 32), 1.08x (32 -> 64) im2col's; dW
#: 1.15-1.25x direct.py's at 16, Winograd's at 32 and 64. Not 1x1 convs (resnet20's stride-2 shortcuts: a tile
#: has K = C = 16 or 32 multiply-adds per call, and im2col's GEMMs measured faster, 0.46 against 0.65 ms).
WIDE_MIN_C = 16
#: ... but the forward and the input gradient of a stride-1 3x3 conv with at least this many channels each side go
#: to Winograd (winograd.py's block-by-block forward: resnet20's 32-channel 16x16 layer, batch 64, 2 threads,
#: AVX-512 Zen 4, 21 alternating calls, medians: forward 1.66 -> 1.44 ms, dx 1.64 -> 1.36; at 16 channels the
#: direct kernel stays faster, 1.69 against 2.05).
WIDE_WINOGRAD_MIN_C = 32
WIDE_FORWARD_MAX_C = 32
WIDE_MAX_C = 64
WIDE_MAX_IMAGE = 1 << 15


def output_size(size: int, kernel: int, stride: int, pads: tuple[int, int], dilation: int) -> int:
    return (size + pads[0] + pads[1] - dilation * (kernel - 1) - 1) // stride + 1


class ConvPlan:
    """Everything about one call shape that does not depend on the data: the geometry vector
    for the kernels, the path, the chunking. Cached per workspace, so a repeated call skips it."""

    __slots__ = ("geo", "pointwise", "N", "C", "O", "G", "Cg", "Og", "T", "Kg", "K", "Wo", "rows", "chunk", "serial",
                 "direct_forward", "direct_weight", "direct_geo", "whole", "keepable", "winograd_forward",
                 "winograd_dx", "winograd_weight", "pads", "blocked", "blocked_geo", "blocked_gemm", "planar",
                 "planar_weight", "wide_forward", "wide_dx", "wide_weight", "wide_dx_geo", "wide_dx_scatter")

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
        # The window covers the whole unpadded image (LeNet-5's c5): x's (N, H*W*C) view already
        # is the column matrix, in (kh, kw, c) order.
        self.whole = (not self.pointwise and G == 1 and (KH, KW) == (H, W) and (Ho, Wo) == (1, 1)
                      and pt == pb == pl == pr == 0 and dh == dw == 1)
        # a column buffer of about ws.budget bytes, but at least ws.min_pixels output pixels
        per_row = Wo * self.K * itemsize
        self.chunk = min(self.rows, max(ws.budget // max(per_row, 1), -(-ws.min_pixels // Wo), 1))
        self.serial = self.rows * Wo * self.K < SERIAL_BELOW
        self.keepable = self.rows * Wo * self.K * itemsize <= ws.keep_budget
        # in the order of the indices at the top of im2col.py
        self.pads = ((pt, pb), (pl, pr))
        self.geo = np.array([N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G], np.int64)
        direct = ws.direct is not False and not self.pointwise and max(sh, sw, dh, dw, G) == 1
        self.direct_forward = direct and (ws.direct or C <= DIRECT_FORWARD_MAX_C)
        self.direct_weight = direct and (
            ws.direct or (C * O <= DIRECT_WEIGHT_MAX_CO and Wo >= DIRECT_MIN_WIDTH_PER_TAP * (KW - 1)))
        # Winograd: at most 2 padding on each side, for dx, whose conv pads dy by 2 - p.
        wino = (ws.winograd is not False and (KH, KW) == (3, 3) and max(sh, sw, dh, dw, G) == 1
                and max(pt, pb, pl, pr) <= 2)
        big = min(Ho, Wo) >= WINOGRAD_MIN_SIZE
        self.winograd_forward = wino and (ws.winograd or (big and min(C, O) >= WINOGRAD_MIN_C))
        self.winograd_dx = wino and (ws.winograd or (big and min(C, O) >= WINOGRAD_MIN_C))
        self.winograd_weight = wino and (ws.winograd or (big and min(C, O) >= WINOGRAD_WEIGHT_MIN_C))
        # (by the rule only where the workspace forces no other kernel: tests pin each path)
        self.blocked = (ws.blocked is not False and not self.pointwise and not self.whole and max(dh, dw, G) == 1
                        and (ws.blocked or (ws.direct is None and ws.winograd is None and C >= BLOCKED_MIN_C
                                            and O <= BLOCKED_MAX_O)))
        self.blocked_geo = blocked_geometry(x_shape, w_shape, (sh, sw), self.pads, y_shape)
        # one input channel (LeNet-5's c1): the forward by blocked.py's planar kernel
        self.planar = (ws.blocked is not False and C == 1 and G == 1 and sw == 1 and dh == dw == 1 and not self.pointwise
                       and not self.whole and (ws.blocked or (ws.direct is None and ws.winograd is None)))
        # ... and at stride 1 both ways its weight gradient by planar.py's kernel (issue 16, LeNet-5's c1)
        self.planar_weight = self.planar and sh == 1
        # a window over the whole image: its GEMMs by blocked.py's, when small (LeNet-5's c5)
        self.blocked_gemm = self.whole and ws.blocked is not False and (
            ws.blocked or (ws.direct is None and ws.winograd is None and N * O * self.K <= BLOCKED_GEMM_MAX_MACS))
        if self.blocked_gemm:
            # it copies no columns: its work is the multiply-adds (c5 at batch 64: 3.1 M, both threads)
            self.serial = N * O * self.K < SERIAL_BELOW
        # blocked_wide.py's kernels (the rule only where the workspace forces no other kernel); the input gradient
        # is the forward of dy, padded by K - 1 - p, with the turned weight: stride 1, padding below the kernel
        wide = (ws.wide is not False and not self.pointwise and not self.whole and max(dh, dw, G) == 1
                and (ws.wide or (ws.direct is None and ws.winograd is None and ws.blocked is None
                                 and min(C, O) >= WIDE_MIN_C and (H + pt + pb) * (W + pl + pr) * C <= WIDE_MAX_IMAGE
                                 and self.T > 1)))
        # (stride-1 3x3 layers of WIDE_WINOGRAD_MIN_C channels each side go to Winograd instead)
        winograd_wide = self.winograd_forward and min(C, O) >= WIDE_WINOGRAD_MIN_C and not ws.wide
        self.wide_forward = wide and not winograd_wide and (ws.wide or (C <= WIDE_FORWARD_MAX_C and O <= WIDE_MAX_C))
        self.wide_dx = (wide and not winograd_wide and max(sh, sw) == 1 and max(pt, pb) < KH and max(pl, pr) < KW
                        and (ws.wide or (O <= WIDE_FORWARD_MAX_C and C <= WIDE_MAX_C)))
        self.wide_weight = wide and (ws.wide or max(C, O) <= WIDE_MAX_C)
        # elsewhere (resnet20's 16 -> 32 stride-2 conv) dx by blocked_dx.py's kernel: 2.2x im2col's GEMM + col2im
        # (one thread, CPU time, benchmarks/bench_wide.py); at 32 -> 64 it measured 0.94x, so that one stays
        self.wide_dx_scatter = wide and not self.wide_dx and (ws.wide or (max(sh, sw) > 1
                                                                          and max(C, O) <= WIDE_FORWARD_MAX_C))
        self.wide_dx_geo = blocked_geometry(y_shape, (C, O, KH, KW), (1, 1),
                                            ((KH - 1 - pt, KH - 1 - pb), (KW - 1 - pl, KW - 1 - pr)), x_shape)
        # in the order of the indices at the top of direct.py
        self.direct_geo = np.array([N, H, W, C, Ho, Wo, KH, KW, pt, pl, O], np.int64)


class ConvWorkspace:
    """Scratch buffers reused between calls (column buffer, repacked weights, dW partials) and
    the plans of the call shapes seen. One per op, or one shared by ops that run one after
    another (optimised inference); not thread-safe. Buffers grow to the largest request and are
    then reused. ``direct`` chooses the direct kernels (direct.py) where they apply: None by the
    measured rule above, True always, False never (tests run both paths); ``winograd`` likewise
    chooses Winograd's training paths (forward with ``keep``, and the input gradient), and True also
    takes the forward without ``keep``; ``blocked`` likewise the register-blocked kernels (blocked.py;
    with and without ``keep``), and ``wide`` blocked_wide.py's (True: every conv they take, forward, the input
    gradient at stride 1, the weight gradient; also without ``keep``); ``tile`` pointwise.py's register
    tile for conv.py's GEMMs (a 1x1 conv's forward and input gradient, the forward on im2col's columns;
    None by gemm_epilogue.py's rule, False never: BLAS)."""

    def __init__(self, budget: int | None = None, min_pixels: int | None = None, direct: bool | None = None,
                 winograd: bool | None = None, blocked: bool | None = None, wide: bool | None = None,
                 tile: bool | None = None):
        self.direct = direct
        self.tile = tile
        self.wide = wide
        self.blocked = blocked
        self.winograd = winograd
        self.keep_budget = KEEP_BUDGET
        #: (address, shape) of the x whose columns the "kept" buffer holds, or None
        self.kept_for: tuple | None = None
        self.budget = COL_BUDGET if budget is None else budget
        self.min_pixels = MIN_CHUNK_PIXELS if min_pixels is None else min_pixels
        self._bufs: dict[tuple[str, str], np.ndarray] = {}
        self._plans: dict[tuple, ConvPlan] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held in scratch buffers."""
        return sum(buf.nbytes for buf in self._bufs.values())

    def get(self, name: str, size: int, dtype: np.dtype) -> np.ndarray:
        key = (name, dtype.char)
        buf = self._bufs.get(key)
        if buf is None or buf.size < size:
            buf = host_empty(max(size, 1), dtype)
            if name == "ones":
                buf.fill(1)
            self._bufs[key] = buf
        return buf[:size]

    def plan(self, x, weight, stride, pads, dilation, groups, y) -> ConvPlan:
        key = (x.shape, weight.shape, stride, pads, dilation, groups, y.shape, x.dtype.char)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = ConvPlan(x.shape, weight.shape, stride, pads, dilation, groups, y.shape, x.itemsize, self)
        return plan


DEFAULT_WORKSPACE = ConvWorkspace()


def holding(run: Callable[[], None], *arrays: np.ndarray) -> Callable[[], None]:
    """``run`` (a bound call) marked with the arrays it keeps for itself (weights packed at bind
    time), so that the plan holding it can count them (:func:`held_bytes`)."""
    run.held = arrays
    return run


def held_bytes(run: Callable[[], None]) -> int:
    """Bytes of the arrays a bound call keeps for itself (:func:`holding`; 0 when unmarked)."""
    return sum(a.nbytes for a in getattr(run, "held", ()))


def serial_threads(plan: ConvPlan) -> int:
    """For small work, run numba's kernels on this thread only (returns the setting to restore;
    0 when nothing was changed). Waking the second thread costs more than it saves there, and
    far more when another process holds a core. (Not inside the kernels: a jitted
    set_num_threads makes a function uncacheable.)"""
    if not plan.serial:
        return 0
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    return previous
