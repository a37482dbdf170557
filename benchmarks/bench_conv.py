"""Convolution kernels: the strategies tried, per layer shape, against NumPy and PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_conv.py [--quick]
        [--only resnet18,vgg16,lenet,alexnet,strategies] [--no-backward]

(OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, when set, make OpenBLAS pick a slow GEMM kernel.)

Columns: ms per call (best of several, the machine is shared and noisy) and GFLOP/s = 2 * MACs /
time; "ref GEMM" is numpy's 2048^3 sgemm on this machine, the ceiling the convolutions are held
to. Strategies (float32, channels-last, batch as given):

* ours           conv2d_forward: im2col in NHWC by a parallel numba kernel, chunked so the column
                 buffer stays ~8 MB (L3), one sgemm per chunk (per group); 1x1 stride-1 layers are
                 one GEMM on the (N*H*W, C) view with no copy.
* ours unchunked the same with an unbounded column buffer (the whole N*Ho*Wo x K matrix at once).
* numpy im2col   sliding_window_view + reshape (NumPy copies) + one matmul: the naive baseline.
* shift9 scipy   the "extended row" trick for stride-1 layers: zero-pad once, compute on the
                 padded Hp x Wp grid so each tap is a contiguous slice of the flat padded input,
                 accumulate KH*KW GEMMs with scipy's sgemm(beta=1), drop the garbage columns.
                 (Shown for comparison only: scipy ships a second OpenBLAS with its own thread
                 pool, and alternating it with numpy's costs milliseconds per switch.)
* torch          torch.nn.functional.conv2d, 2 threads, NCHW and channels_last (if installed).

Backward: ours (dx + dweight) against torch's autograd for the same two gradients.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnnlang.environment import tune_threads  # noqa: E402

# Before NumPy: OpenBLAS reads its options when it loads (cnnlang/environment.py).
tune_threads()

import numpy as np  # noqa: E402

try:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
except ImportError:  # torch is optional
    torch = None

from cnnlang.runtime.kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward  # noqa: E402

try:
    from scipy.linalg import blas as scipy_blas
except ImportError:
    scipy_blas = None

SLOW_BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# (name, N, C, H, O, k, stride, pad, count in the network)
RESNET18 = [
    ("conv1 7x7/2", 8, 3, 224, 64, 7, 2, 3, 1),
    ("l1 3x3 64", 8, 64, 56, 64, 3, 1, 1, 4),
    ("l2 3x3/2 64>128", 8, 64, 56, 128, 3, 2, 1, 1),
    ("l2 3x3 128", 8, 128, 28, 128, 3, 1, 1, 3),
    ("l2 1x1/2 down", 8, 64, 56, 128, 1, 2, 0, 1),
    ("l3 3x3/2 128>256", 8, 128, 28, 256, 3, 2, 1, 1),
    ("l3 3x3 256", 8, 256, 14, 256, 3, 1, 1, 3),
    ("l3 1x1/2 down", 8, 128, 28, 256, 1, 2, 0, 1),
    ("l4 3x3/2 256>512", 8, 256, 14, 512, 3, 2, 1, 1),
    ("l4 3x3 512", 8, 512, 7, 512, 3, 1, 1, 3),
    ("l4 1x1/2 down", 8, 256, 14, 512, 1, 2, 0, 1),
]
VGG16 = [
    ("c1_1 3>64 @224", 4, 3, 224, 64, 3, 1, 1, 1),
    ("c1_2 64 @224", 4, 64, 224, 64, 3, 1, 1, 1),
    ("c2_1 64>128 @112", 4, 64, 112, 128, 3, 1, 1, 1),
    ("c2_2 128 @112", 4, 128, 112, 128, 3, 1, 1, 1),
    ("c3_1 128>256 @56", 4, 128, 56, 256, 3, 1, 1, 1),
    ("c3_x 256 @56", 4, 256, 56, 256, 3, 1, 1, 2),
    ("c4_1 256>512 @28", 4, 256, 28, 512, 3, 1, 1, 1),
    ("c4_x 512 @28", 4, 512, 28, 512, 3, 1, 1, 2),
    ("c5_x 512 @14", 4, 512, 14, 512, 3, 1, 1, 3),
]
LENET = [
    ("c1 1>6 5x5 @32", 64, 1, 32, 6, 5, 1, 0, 1),
    ("c3 6>16 5x5 @14", 64, 6, 14, 16, 5, 1, 0, 1),
    ("c5 16>120 5x5 @5", 64, 16, 5, 120, 5, 1, 0, 1),
]
ALEXNET_GROUPED = [  # (name, N, C, H, O, k, stride, pad, count, groups)
    ("conv2 5x5 g2 @27", 8, 96, 27, 256, 5, 1, 2, 1, 2),
    ("conv4 3x3 g2 @13", 8, 384, 13, 384, 3, 1, 1, 1, 2),
    ("depthwise 3x3 @56", 8, 64, 56, 64, 3, 1, 1, 1, 64),
]


def _busy_seconds() -> float:
    """CPU seconds all processes have used (Linux /proc/stat); 0 elsewhere."""
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _wait_idle(limit: float = 30.0) -> None:
    """Wait (up to `limit` s) until no other process uses the CPU for 0.2 s."""
    end = time.time() + limit
    while time.time() < end:
        b0 = _busy_seconds()
        time.sleep(0.2)
        if _busy_seconds() - b0 < 0.03:
            return


def best_time(fn, repeat: int, min_time: float = 0.1) -> float:
    """Best per-call time over `repeat` clean batches of calls lasting >= min_time each.

    The machine this runs on may be shared: a batch during which other processes used more than
    a tenth of the time in CPU (so a 2-core fork-join waited for a descheduled thread) is
    discarded and retried after the machine is idle again (at most 4 * repeat batches)."""
    fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    calls = max(1, int(min_time / max(once, 1e-7)))
    times: list[float] = []
    for attempt in range(4 * repeat):
        b0, o0 = _busy_seconds(), _own_seconds()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        dt = time.perf_counter() - start
        other = (_busy_seconds() - b0) - (_own_seconds() - o0)
        if other > 0.1 * dt + 0.021 and attempt < 4 * repeat - 1:
            _wait_idle()
            continue
        times.append(dt / calls)
        if len(times) >= repeat:
            break
    return min(times) if times else float("nan")


def numpy_im2col_forward(x, w, stride, pad):
    """The naive baseline: NumPy windows, one copy to a column matrix, one matmul."""
    n, _, _, c = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    ho, wo = win.shape[1:3]
    col = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c)  # copies
    wr = w.transpose(2, 3, 1, 0).reshape(k * k * c, o)
    return (col @ wr).reshape(n, ho, wo, o)


class Shift9:
    """The extended-row trick (stride 1, groups 1) with scipy sgemm accumulation (beta = 1)."""

    def __init__(self, x, w, pad):
        n, h, wd, c = x.shape
        o, _, k, _ = w.shape
        self.k, self.pad, self.o = k, pad, o
        self.hp, self.wp = h + 2 * pad, wd + 2 * pad
        self.ho, self.wo = self.hp - k + 1, self.wp - k + 1
        self.m = n * self.hp * self.wp
        slack = (k - 1) * self.wp + k
        self.xp = np.zeros((self.m + slack, c), x.dtype)
        self.y = np.empty((self.m, o), x.dtype)
        # per tap (C x O) in Fortran order = the (O x C) C-order block of the repacked weight
        self.taps = [np.ascontiguousarray(w[:, :, i, j]) for i in range(k) for j in range(k)]

    def __call__(self, x, out):
        n, h, wd, _ = x.shape
        p = self.pad
        self.xp[: self.m].reshape(n, self.hp, self.wp, -1)[:, p : p + h, p : p + wd] = x
        yf = self.y.T  # Fortran (O, M) view of the C-order (M, O) buffer
        for t, wt in enumerate(self.taps):
            off = (t // self.k) * self.wp + t % self.k
            a = self.xp[off : off + self.m]
            scipy_blas.sgemm(1.0, wt, a.T, 0.0 if t == 0 else 1.0, yf, overwrite_c=1)
        out[...] = self.y.reshape(n, self.hp, self.wp, self.o)[:, : self.ho, : self.wo]
        return out


def run_case(row, args, strategies: bool):
    name, n, c, h, o, k, s, p, count = row[:9]
    groups = row[9] if len(row) > 9 else 1
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, h, h, c), dtype=np.float32)
    w = rng.standard_normal((o, c // groups, k, k), dtype=np.float32) * 0.1
    ho = (h + 2 * p - k) // s + 1
    out = np.empty((n, ho, ho, o), np.float32)
    flops = 2.0 * n * ho * ho * o * (c // groups) * k * k
    pads, stride = ((p, p), (p, p)), (s, s)
    ws = ConvWorkspace()
    res = {}
    res["ours"] = best_time(lambda: conv2d_forward(x, w, None, stride, pads, (1, 1), groups, out, ws), args.repeat)
    if strategies:
        big = ConvWorkspace(budget=1 << 40)
        res["ours unchunked"] = best_time(lambda: conv2d_forward(x, w, None, stride, pads, (1, 1), groups, out, big), args.repeat)
        if groups == 1:
            res["numpy im2col"] = best_time(lambda: numpy_im2col_forward(x, w, s, p), args.repeat)
        if scipy_blas is not None and s == 1 and groups == 1:
            shift = Shift9(x, w, p)
            ref = np.empty_like(out)
            conv2d_forward(x, w, None, stride, pads, (1, 1), 1, ref)
            shift(x, out)
            assert np.allclose(out, ref, rtol=1e-3, atol=1e-3)
            res["shift9 scipy"] = best_time(lambda: shift(x, out), args.repeat)
    if torch is not None:
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        wt = torch.from_numpy(w)
        xc = xt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            res["torch nchw"] = best_time(lambda: F.conv2d(xt, wt, None, s, p, 1, groups), args.repeat)
            res["torch cl"] = best_time(lambda: F.conv2d(xc, wt, None, s, p, 1, groups), args.repeat)
    if args.backward:
        dy = rng.standard_normal(out.shape, dtype=np.float32)
        dx = np.empty_like(x) if c > 3 else None  # the network input needs no gradient
        dw = np.empty_like(w)
        res["ours bwd"] = best_time(lambda: conv2d_backward(x, w, dy, stride, pads, (1, 1), groups, dx, dw, None, ws), args.repeat)
        if torch is not None:
            xg = xt.clone().requires_grad_(dx is not None)
            wg = wt.clone().requires_grad_(True)
            dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
            wanted = [wg] + ([xg] if dx is not None else [])
            y = F.conv2d(xg, wg, None, s, p, 1, groups)

            def torch_backward():
                torch.autograd.grad(y, wanted, dyt, retain_graph=True)

            res["torch bwd"] = best_time(torch_backward, args.repeat)
    return name, flops, count, res


def table(title, rows, args, strategies=False):
    print(f"\n== {title}")
    results = [run_case(r, args, strategies) for r in rows]
    keys = list(dict.fromkeys(k for _, _, _, res in results for k in res))
    print(f"{'layer':22s}{'GFLOP':>7s} " + " ".join(f"{k:>19s}" for k in keys))
    totals = dict.fromkeys(keys, 0.0)
    total_flops = 0.0
    for name, flops, count, res in results:
        cells = []
        for k in keys:
            if k in res:
                mult = 2 if "bwd" in k else 1  # backward here = dx + dW: two convolutions' work
                cells.append(f"{res[k] * 1e3:9.2f}ms {mult * flops / res[k] / 1e9:5.0f}GF")
                totals[k] += count * res[k]
            else:
                cells.append(f"{'-':>19s}")
        total_flops += count * flops
        print(f"{name:22s}{flops / 1e9:7.2f} " + " ".join(cells), flush=True)
    cells = []
    for k in keys:
        complete = all(k in res for _, _, _, res in results)
        mult = 2 if "bwd" in k else 1
        cells.append(f"{totals[k] * 1e3:9.1f}ms {mult * total_flops / totals[k] / 1e9:5.0f}GF" if complete else f"{'-':>19s}")
    print(f"{'network total':22s}{total_flops / 1e9:7.2f} " + " ".join(cells))
    if "torch cl" in totals and all("torch cl" in r[3] for r in results):
        print(f"  ours / torch time: {totals['ours'] / totals['torch nchw']:.2f} (NCHW), {totals['ours'] / totals['torch cl']:.2f} (channels_last)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", default="strategies,resnet18,vgg16,lenet,alexnet")
    parser.add_argument("--no-backward", dest="backward", action="store_false")
    args = parser.parse_args()
    args.repeat = 3 if args.quick else 7
    slow = [name for name in SLOW_BLAS_VARS if name in os.environ]
    if slow:
        print(f"WARNING: {', '.join(slow)} set: OpenBLAS uses a slow kernel; unset them for real numbers")
    print(f"threads: GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')} torch={'%d' % torch.get_num_threads() if torch else 'absent'}")
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    c = np.empty_like(a)
    t = best_time(lambda: np.matmul(a, a, out=c), 5)
    print(f"ref GEMM: numpy 2048^3 sgemm {t * 1e3:.1f} ms = {2 * 2048**3 / t / 1e9:.0f} GFLOP/s")
    only = set(args.only.split(","))
    if "strategies" in only:
        table("strategies (forward, float32; batch 8 ResNet / batch 4 VGG shapes)", [RESNET18[1], RESNET18[9], RESNET18[0], VGG16[1], VGG16[5], VGG16[8]], args, strategies=True)
    if "resnet18" in only:
        table("ResNet-18 convolutions, batch 8 (total weights each shape by its count)", RESNET18, args)
    if "vgg16" in only:
        table("VGG-16 convolutions, batch 4", VGG16, args)
    if "lenet" in only:
        table("LeNet-5 convolutions, batch 64", LENET, args)
    if "alexnet" in only:
        table("grouped and depthwise", ALEXNET_GROUPED, args)


if __name__ == "__main__":
    main()
