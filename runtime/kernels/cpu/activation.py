"""Element-wise activations and softmax over the channel axis.

The element-wise kernels take flat (1-D, contiguous) views, so one specialisation per dtype
serves every rank. relu runs in Numba.

tanh and sigmoid, float32: Numba kernels with their own vectorisable formulas (``tanh32``,
``sigmoid32``; inline, so the epilogues of runtime/kernels/cpu/epilogue.py fuse them too).
Without Intel's SVML, Numba calls the scalar libm tanh/exp per element, and NumPy's float32
tanh is not SIMD on AVX2 machines either: on 64 x 28 x 28 x 6 values (LeNet-5's first tanh, one thread,
AMD EPYC AVX2) np.tanh took 1.03 ms, np's sigmoid 0.81 ms, these kernels 0.41 and 0.37 ms.
Both are built on ``_exp_reduced``, a Cephes-style expf for arguments <= 0 (Cody-Waite
reduction by ln 2, degree-6 polynomial, 2^-k assembled from its exponent bits; fused
multiply-adds allowed, see ``CONTRACT``):

* tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|) for |x| > 0.625 (|x| clamped to 9.5,
  where tanh rounds to 1); below, x + x^3 Q(x^2) with a degree-5 Q fitted (weighted minimax) to
  tanh's relative error on [0, 0.625], where 1 - e would cancel. Max error 1.5 ulp against
  float64 tanh (np.tanh: 1.4).
* sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) below, e = exp(-|x|): accurate relative to
  tiny outputs down to the denormals (2.3 ulp), which PyTorch's 1 / (1 + exp(-x)) keeps too
  (0.5 + 0.5 tanh(x/2) would not); in float32 NumPy's exp(-x) overflows below x = -88 and that
  formula gives 0 where the true value is a denormal.

Both pass NaN through and give the exact limits at +-inf, 0 and -0 (tanh keeps the sign of
zero and denormal inputs). float64 keeps NumPy's ufuncs (np.tanh, and 1 / (1 + exp(-x))
as PyTorch computes it): exact to float64 rounding, which the float64 gradient checks need.

The three backward passes share one kernel selected by ``kind`` (fewer jitted functions
compile faster; the branch is loop-invariant) and use the saved *output*: relu' = [y > 0]
(0 at x = 0, as PyTorch), tanh' = 1 - y^2, sigmoid' = y (1 - y).

Softmax works on rows x C (the channel axis is the last, contiguous one) and subtracts each
row's maximum before exponentiating, so large inputs do not overflow.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

RELU, TANH, SIGMOID = 0, 1, 2
KINDS = {"relu": RELU, "tanh": TANH, "sigmoid": SIGMOID}


@njit(parallel=True, cache=True, error_model="numpy")
def relu_forward(x, out):  # pragma: no cover - jitted
    """out = max(x, 0) on flat arrays; NaN stays NaN."""
    zero = x.dtype.type(0)
    for i in prange(x.size):
        v = x[i]
        out[i] = v if (v > zero or v != v) else zero


# --------------------------------------------------------------------------- float32 tanh, sigmoid


@intrinsic
def _float32_from_bits(typingctx, bits):  # pragma: no cover - compile time
    """The float32 whose IEEE bits are the int32 ``bits`` (a bitcast; LLVM vectorises it)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


#: Numba's fastmath flag for the float32 kernels: only fused multiply-add (contract), which
#: rounds once instead of twice; measured 20% faster, no other unsafe-math assumption.
CONTRACT = {"contract"}
_F = np.float32
_I = np.int32
# Cephes expf: ln 2 split in two (C1 exact in 9 bits, so k * C1 is exact for the k used here)
# and its minimax polynomial for exp(r) - 1 - r on |r| <= ln(2) / 2.
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_E0, _E1, _E2 = _F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3)
_E3, _E4, _E5 = _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1)
# tanh(x) = x + x^3 Q(x^2) on |x| <= 0.625 (0.76 ulp in float32 arithmetic)
_Q0, _Q1, _Q2 = _F(-0.3333333134651184), _F(0.1333320587873459), _F(-0.05394676327705383)
_Q3, _Q4, _Q5 = _F(0.021700702607631683), _F(-0.008177397772669792), _F(0.0021429616026580334)
_TANH_SMALL, _TANH_BIG = _F(0.625), _F(9.5)
_EXP_LOW = _F(-104.0)  # exp below this rounds to 0 in float32 (the smallest denormal is 2^-149)
_HALF, _ONE, _TWO, _ZERO = _F(0.5), _F(1.0), _F(2.0), _F(0.0)


# The inline functions below are compiled into their callers, also those of epilogue.py, whose
# cache=True files Numba does not invalidate when this file changes: after editing them, clear
# runtime/kernels/cpu/__pycache__ (a fresh install has no stale cache).


@njit(inline="always", error_model="numpy")
def _exp_reduced(a):  # pragma: no cover - jitted
    """(p, k) with exp(a) = p 2^-k, for float32 a in [-104, 0]: k = round(a / ln 2), p = exp(r)
    on |r| <= ln(2) / 2."""
    k = _I(_HALF - a * _LOG2E)  # a <= 0: truncation of a non-negative value rounds half up
    kf = _F(k)
    r = a + kf * _LN2_HI + kf * _LN2_LO
    return (((((_E0 * r + _E1) * r + _E2) * r + _E3) * r + _E4) * r + _E5) * (r * r) + r + _ONE, k


@njit(inline="always", error_model="numpy")
def _power_of_2(k):  # pragma: no cover - jitted
    """2^-k as a float32, for int32 k in [-127, 126] (the exponent field, bitcast)."""
    return _float32_from_bits(_I((_I(127) - k) << _I(23)))


@njit(inline="always", error_model="numpy")
def tanh32(v):  # pragma: no cover - jitted
    """tanh of a float32, branch-free (selects), so that loops over it vectorise. NaN passes
    the clamps and takes the small branch; s (1 + ...) keeps signed zeros and denormals."""
    m = abs(v)
    s = _TANH_SMALL if v > _TANH_SMALL else v
    s = -_TANH_SMALL if s < -_TANH_SMALL else s
    t = s * s
    small = s * (_ONE + t * (((((_Q5 * t + _Q4) * t + _Q3) * t + _Q2) * t + _Q1) * t + _Q0))
    c = _TANH_BIG if m > _TANH_BIG else m
    c = _TANH_SMALL if not (c > _TANH_SMALL) else c  # keeps exp's argument in range (and NaN out)
    p, k = _exp_reduced(-_TWO * c)
    e = p * _power_of_2(k)  # k <= 28
    big = (_ONE - e) / (_ONE + e)
    big = -big if v < _ZERO else big
    return big if m > _TANH_SMALL else small


@njit(inline="always", error_model="numpy")
def sigmoid32(v):  # pragma: no cover - jitted
    """1 / (1 + exp(-v)) of a float32, branch-free, relatively accurate for tiny outputs."""
    a = -abs(v)
    a = _EXP_LOW if not (a > _EXP_LOW) else a
    p, k = _exp_reduced(a)
    # k reaches 150: 2^-k as two normal factors, so a denormal result rounds once, at the end
    half = k >> _I(1)
    e = p * _power_of_2(half) * _power_of_2(k - half)
    r = (_ONE if v >= _ZERO else e) / (_ONE + e)
    return v if v != v else r


@njit(parallel=True, cache=True, error_model="numpy", fastmath=CONTRACT)
def _smooth_forward32(x, out, kind):  # pragma: no cover - jitted
    """out = tanh(x) or sigmoid(x) on flat float32 arrays (out may be x)."""
    if kind == TANH:
        for i in prange(x.size):
            out[i] = tanh32(x[i])
    else:
        for i in prange(x.size):
            out[i] = sigmoid32(x[i])


def _flat(a: np.ndarray) -> np.ndarray | None:
    """A 1-D view of a C-contiguous array, else None."""
    return a.reshape(-1) if a.flags.c_contiguous else None


def activation_forward(x: np.ndarray, out: np.ndarray, kind: int) -> None:
    """out = f(x) element-wise on arrays of one dtype; ``kind`` is RELU, TANH or SIGMOID. relu
    takes flat arrays; tanh and sigmoid any layout (out may be x): float32 C-contiguous arrays
    run the Numba kernels, anything else NumPy's ufuncs."""
    if kind == RELU:
        relu_forward(x, out)
        return
    if x.dtype == np.float32 and out.dtype == np.float32 and x.size:
        xf, of = _flat(x), _flat(out)
        if xf is not None and of is not None:
            _smooth_forward32(xf, of, kind)
            return
    if kind == TANH:
        np.tanh(x, out=out)
    else:
        with np.errstate(over="ignore"):  # exp(-x) = inf for x < -88 (float32): sigmoid 0
            np.exp(np.negative(x, out=out), out=out)
        np.add(out, 1, out=out)
        np.reciprocal(out, out=out)


@njit(parallel=True, cache=True, error_model="numpy")
def activation_backward(y, dy, dx, kind):  # pragma: no cover - jitted
    """dx = dy * f'(x), written through the forward output y = f(x) (flat arrays)."""
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    for i in prange(y.size):
        v = y[i]
        if kind == RELU:
            dx[i] = dy[i] if v > zero else zero
        elif kind == TANH:
            dx[i] = dy[i] * (one - v * v)
        else:
            dx[i] = dy[i] * v * (one - v)


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_forward(x, out):  # pragma: no cover - jitted
    """out[r] = exp(x[r] - max x[r]) / sum(...) for each row r of a rows x C array."""
    rows, channels = x.shape
    for r in prange(rows):
        top = x[r, 0]
        for c in range(1, channels):
            if x[r, c] > top:
                top = x[r, c]
        total = 0.0
        for c in range(channels):
            e = math.exp(x[r, c] - top)
            out[r, c] = e
            total += e
        scale = x.dtype.type(1.0 / total)
        for c in range(channels):
            out[r, c] *= scale


@njit(parallel=True, cache=True, error_model="numpy")
def softmax_backward(y, dy, dx):  # pragma: no cover - jitted
    """dx[r] = y[r] * (dy[r] - <dy[r], y[r]>) for each row r (y is the forward output)."""
    rows, channels = y.shape
    for r in prange(rows):
        dot = 0.0
        for c in range(channels):
            dot += dy[r, c] * y[r, c]
        dot_t = y.dtype.type(dot)
        for c in range(channels):
            dx[r, c] = y[r, c] * (dy[r, c] - dot_t)
