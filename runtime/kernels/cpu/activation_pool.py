"""The backward of an element-wise activation and the average pooling after it in one pass (training:
LeNet-5's tanh -> avgpool 2x2), for windows that tile the image exactly: kernel = stride, no padding,
H and W whole multiples of the kernel. cnnlang/passes/fuse_training.py fuses such a pair.

dz = f'(y) * dp / (KH * KW) spread over each window, through the activation's output y: one pass writing
dz, where the pool's backward wrote its dx and the activation's backward read it back. Per output row of
the pool, dp's row is spread once into a row of W*C (the only loop that goes pixel by pixel), then each of
the window's KH input rows is one flat loop, which vectorises whatever the channel count (LeNet-5's 6).
Measured (LeNet-5's two, tanh, batch 64, float32, 2 threads, AMD EPYC, against avgpool_backward +
activation_backward alternating in one process, medians of 300): 64 x 28 x 28 x 6 0.30 -> 0.15 ms,
64 x 10 x 10 x 16 0.07 -> 0.03 ms; the training step 1.06x (below).

The forward stays the two kernels (activation.py's, then pool.py's): one fused pass (f over the rows, their
window sums from cache) measured 0.55 against 0.60 ms on one thread but 0.39 against 0.30 on two.
LeNet-5's training step with the pair fused (both tanh -> avgpool, batch 64, two networks alternating in
one process, 15 rounds of 20 steps): 5.44 -> 5.13 and 5.03 -> 4.74 ms on two threads, 6.37 -> 6.09 ms on one.
"""

from __future__ import annotations

from numba import njit, prange

from .activation import RELU, TANH


def scratch_shape(threads: int, in_image: tuple[int, ...]) -> tuple[int, int]:
    """The kernel's scratch: a row of W*C per thread, a cache line or more apart (in the fused forward
    tried here, two threads writing rows that shared a line took 1.17x as long)."""
    row = in_image[1] * in_image[2]
    return threads, -(-row // 16) * 16 + 16


@njit(parallel=True, cache=True, error_model="numpy")
def activation_avgpool_backward(y, dp, dz, kind, KH, KW, scratch):  # pragma: no cover - jitted
    """dz = f'(y) * (dp / (KH*KW) spread over each window) for y, dz (N, H, W, C) and dp (N, H/KH, W/KW, C),
    C-contiguous; f' from the output y (relu: [y > 0], tanh: 1 - y^2, sigmoid: y (1 - y)). scratch:
    scratch_shape's (T rows, T the threads to use)."""
    N, H, W, C = y.shape
    Ho, Wo = H // KH, W // KW
    width, size = W * C, Wo * C
    yr, dzr, dpr = y.reshape(N * H, width), dz.reshape(N * H, width), dp.reshape(N * Ho, size)
    scale = y.dtype.type(1.0 / (KH * KW))
    zero, one = y.dtype.type(0), y.dtype.type(1)
    T = scratch.shape[0]
    tasks = N * Ho
    for t in prange(T):
        spread = scratch[t, :width]
        for task in range(t * tasks // T, (t + 1) * tasks // T):
            grad = dpr[task]
            for j in range(Wo):
                for b in range(KW):
                    for c in range(C):
                        spread[(j * KW + b) * C + c] = grad[j * C + c] * scale
            first = task * KH  # (n, oh) -> input row n*H + oh*KH
            for a in range(KH):
                src, dst = yr[first + a], dzr[first + a]
                if kind == RELU:
                    for q in range(width):
                        dst[q] = spread[q] if src[q] > zero else zero
                elif kind == TANH:
                    for q in range(width):
                        dst[q] = spread[q] * (one - src[q] * src[q])
                else:
                    for q in range(width):
                        dst[q] = spread[q] * src[q] * (one - src[q])
