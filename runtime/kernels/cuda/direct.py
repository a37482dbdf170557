"""Direct convolution kernels on the GPU for grouped convolutions with few channels per group
(depthwise above all), where im2col + GEMM would run one thin GEMM per group: G launches of an
(pixels x Kg) @ (Kg x Og) product with Kg = KH*KW*Cg as small as 9.

* forward: one thread per output element sums its Cg*KH*KW taps; bias and activation follow in
  the same thread. ``out`` may be any strided 4-D view (a channel slice of a concat buffer).
* dx: one thread per input element gathers from the outputs whose windows hold it (no atomics).
* dW: one block per weight element reduces over all N*Ho*Wo output pixels in shared memory.

Same geometry tuple as runtime/kernels/cuda/im2col.py. Kernels are built per dtype, so sums stay
in the arrays' precision.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda
from numba.np import numpy_support

from .epilogue import activation_function

#: Most threads per block of the weight-gradient reduction (a power of two).
REDUCE_THREADS = 128


def reduce_threads(pixels: int) -> int:
    """Threads per weight element for ``pixels`` output pixels: a power of two from one warp to
    :data:`REDUCE_THREADS`, about 8 pixels each (more threads would only add to the tree)."""
    threads = 32
    while threads < REDUCE_THREADS and threads * 8 < pixels:
        threads *= 2
    return threads


@functools.cache
def forward_kernel(dtype: str):
    """kernel(x, weight, out, bias, has_bias, code, geo): out = f(conv(x, weight) + bias);
    one thread per element of out (N, Ho, Wo, O)."""
    zero = np.dtype(dtype).type(0)
    activate = activation_function(dtype)

    @cuda.jit
    def kernel(x, weight, out, bias, has_bias, code, geo):  # pragma: no cover - compiled
        N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G = geo
        O = out.shape[3]
        t = cuda.grid(1)
        if t >= N * Ho * Wo * O:
            return
        o = t % O
        pix = t // O
        ow = pix % Wo
        oh = (pix // Wo) % Ho
        n = pix // (Wo * Ho)
        Cg = C // G
        c0 = (o // (O // G)) * Cg
        total = zero
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            if ih < 0 or ih >= H:
                continue
            for kw in range(KW):
                iw = ow * sw - pl + kw * dw
                if iw < 0 or iw >= W:
                    continue
                for c in range(Cg):
                    total += x[n, ih, iw, c0 + c] * weight[o, c, kh, kw]
        if has_bias:
            total += bias[o]
        out[n, oh, ow, o] = activate(total, code)

    return kernel


@functools.cache
def input_grad_kernel(dtype: str):
    """kernel(dy, weight, dx, geo): dx (N, H, W, C) from dy (N, Ho, Wo, O); one thread per
    element of dx, overwriting it."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def kernel(dy, weight, dx, geo):  # pragma: no cover - compiled
        N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G = geo
        O = dy.shape[3]
        t = cuda.grid(1)
        if t >= N * H * W * C:
            return
        c = t % C
        pix = t // C
        iw = pix % W
        ih = (pix // W) % H
        n = pix // (W * H)
        Cg = C // G
        Og = O // G
        g = c // Cg
        cc = c - g * Cg
        total = zero
        for kh in range(KH):
            u = ih + pt - kh * dh
            if u < 0 or u % sh != 0 or u // sh >= Ho:
                continue
            oh = u // sh
            for kw in range(KW):
                v = iw + pl - kw * dw
                if v < 0 or v % sw != 0 or v // sw >= Wo:
                    continue
                ow = v // sw
                for o in range(g * Og, (g + 1) * Og):
                    total += dy[n, oh, ow, o] * weight[o, cc, kh, kw]
        dx[n, ih, iw, c] = total

    return kernel


@functools.cache
def weight_grad_kernel(dtype: str, threads: int):
    """kernel(x, dy, dweight, geo): dweight (O, Cg, KH, KW), overwritten; one block of
    ``threads`` (:func:`reduce_threads`) per weight element, reducing over every output pixel."""
    zero = np.dtype(dtype).type(0)
    nbtype = numpy_support.from_dtype(np.dtype(dtype))

    @cuda.jit
    def kernel(x, dy, dweight, geo):  # pragma: no cover - compiled
        N, H, W, C, Ho, Wo, KH, KW, sh, sw, pt, pl, dh, dw, G = geo
        O = dy.shape[3]
        Cg = C // G
        e = cuda.blockIdx.x
        kw = e % KW
        kh = (e // KW) % KH
        cc = (e // (KW * KH)) % Cg
        o = e // (KW * KH * Cg)
        c = (o // (O // G)) * Cg + cc
        partial = cuda.shared.array(threads, nbtype)
        tid = cuda.threadIdx.x
        total = zero
        for pix in range(tid, N * Ho * Wo, threads):
            ow = pix % Wo
            oh = (pix // Wo) % Ho
            n = pix // (Wo * Ho)
            ih = oh * sh - pt + kh * dh
            iw = ow * sw - pl + kw * dw
            if ih >= 0 and ih < H and iw >= 0 and iw < W:
                total += dy[n, oh, ow, o] * x[n, ih, iw, c]
        partial[tid] = total
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if tid < step:
                partial[tid] += partial[tid + step]
            cuda.syncthreads()
            step //= 2
        if tid == 0:
            dweight[o, cc, kh, kw] = partial[0]

    return kernel
