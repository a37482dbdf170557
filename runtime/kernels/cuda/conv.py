"""Convolution on the GPU, channels-last, forward and backward: the public API of the CUDA conv
kernels (the CPU's twin is runtime/kernels/cpu/conv.py; same layouts, same column order).

Algorithm: **im2col into a bounded workspace + GEMM**, chosen over implicit GEMM because the
GEMM is then a plain one, and a plain GEMM can be cuBLAS's (runtime/kernels/cuda/gemm.py) --
years of tuning a numba.cuda implicit-GEMM kernel could not match -- and because the column
buffer is bounded (chunks of output rows, at most ``budget`` bytes, shared by all convs), so
its cost is one extra write and read of KH*KW times the input per chunk, at the GPU's memory
bandwidth. No GPU was lent while this was written, so this is reasoning, not a measurement:
``CNNLANG_CUDA_CONV`` (or :func:`conv_method`'s ``method``) switches between the paths, and the
forward also exists as an implicit GEMM (``implicit``: the tiled GEMM kernel gathering its A
tiles from x, no column buffer; backward then runs im2col), so benchmarks/ on a GPU can measure
them against each other and against cuBLAS.

* ``pointwise`` (1x1, stride 1, no padding): the convolution *is* a GEMM on the (N*H*W, C) view of
  x; nothing is copied.
* ``im2col``: columns of a chunk of output rows, then per group ``out = col_g @ W_g^T`` with the
  weight packed once per call (or once per weight change in inference: ``packed``) to
  (O, KH*KW*Cg). Bias and activation run in the GEMM's epilogue, on its registers. Backward:
  dW_g = dy_g^T @ col_g accumulated over chunks (the GEMM adds into its output), dcol = dy_g @ W_g
  into the same buffer, then a gather col2im (no atomics).
* ``direct`` (groups with few output channels each, depthwise above all): one thread per output,
  per input-gradient and per weight-gradient element (runtime/kernels/cuda/direct.py), where
  im2col would run one thin GEMM per group.

``conv_forward`` writes ``out``, which may be a channel slice of a larger channels-last array (a
concat buffer): every path writes straight into it. Parameters follow the CPU API: ``stride``
and ``dilation`` (h, w), ``pads`` ((top, bottom), (left, right)), ``groups``; a 1-D conv is the
H = 1 case. Float32 and float64 throughout.
"""

from __future__ import annotations

import os

from cnnlang.errors import UsageError

from ..cpu.workspace import ConvPlan
from . import direct
from .epilogue import NONE, placeholder
from .gemm import conv_gemm, gemm
from .im2col import col2im, col2im_threads, im2col, launch, pack_weight, unpack_weight
from .memory import fill
from .reduce import column_sums
from .views import DEVICE_WORKSPACE, DeviceWorkspace, channel_rows

METHODS = ("auto", "im2col", "implicit", "direct")
#: Groups with fewer output channels than this run ``direct`` under "auto": a 64-wide GEMM tile
#: would be mostly empty. A reasoned threshold, not a measured one (no GPU was lent).
DIRECT_BELOW = 16


def conv_method(groups: int, channels_per_group: int, outputs_per_group: int, method: str | None = None) -> str:
    """The path a conv takes: ``method`` (default: ``CNNLANG_CUDA_CONV``, else "auto") resolved;
    "auto" is ``direct`` for grouped convs with fewer than :data:`DIRECT_BELOW` outputs per group."""
    method = method or os.environ.get("CNNLANG_CUDA_CONV", "auto")
    if method not in METHODS:
        raise UsageError(f"CNNLANG_CUDA_CONV={method!r} is not one of {', '.join(METHODS)}")
    if method == "auto":
        return "direct" if groups > 1 and outputs_per_group < DIRECT_BELOW else "im2col"
    return method


def _plan(x, weight, stride, pads, dilation, groups, y, ws: DeviceWorkspace) -> ConvPlan:
    key = (tuple(x.shape), tuple(weight.shape), tuple(stride), tuple(map(tuple, pads)), tuple(dilation), groups,
           tuple(y.shape), x.dtype.char)  # fmt: skip
    plan = ws.plan(key, lambda: ConvPlan(x.shape, weight.shape, stride, pads, dilation, groups, y.shape, x.dtype.itemsize, ws))
    if weight.dtype != x.dtype or y.dtype != x.dtype or x.dtype.char not in "fd":
        raise TypeError(f"conv: float32 or float64 arrays of one dtype expected, got {x.dtype}, {weight.dtype}, {y.dtype}")
    return plan


def _geometry(plan: ConvPlan) -> tuple[int, ...]:
    return tuple(int(v) for v in plan.geo)


def pack(weight, ws: DeviceWorkspace = DEVICE_WORKSPACE, out=None):
    """weight (O, Cg, KH, KW) in column order (O, KH*KW*Cg); a reshape for a 1x1 kernel."""
    o, cg, kh, kw = weight.shape
    if kh * kw == 1:
        return weight.reshape(o, cg)
    packed = ws.get("w", weight.size, weight.dtype).reshape(o, kh * kw * cg) if out is None else out
    pack_weight[launch(weight.size)](weight, packed)
    return packed


def conv_forward(x, weight, bias, stride, pads, dilation, groups, out, activation: int = NONE,
                 method: str = "im2col", packed=None, workspace: DeviceWorkspace | None = None):  # fmt: skip
    """out (N, Ho, Wo, O) = f(conv(x (N, H, W, C), weight (O, C/g, KH, KW)) + bias); ``f`` an
    epilogue code, ``method`` "im2col", "implicit" or "direct" (see :func:`conv_method`),
    ``packed`` the weight in column order when the caller keeps one."""
    ws = DEVICE_WORKSPACE if workspace is None else workspace
    plan = _plan(x, weight, stride, pads, dilation, groups, out, ws)
    if plan.N == 0:
        return out
    has_bias = bias is not None
    bias_array = bias if has_bias else placeholder(x.dtype)
    if method == "direct":
        direct.forward_kernel(x.dtype.char)[launch(out.size)](
            x, weight, out, bias_array, has_bias, activation, _geometry(plan)
        )
        return out
    y2 = channel_rows(out, plan.O)
    G, Og = plan.G, plan.Og

    def per_group(rows, wr, target, cols):
        for g in range(G):
            go = slice(g * Og, (g + 1) * Og)
            gemm(rows[:, g * cols : (g + 1) * cols], wr[go], out=target[:, go], trans_b=True,
                 bias=bias[go] if has_bias else None, activation=activation)  # fmt: skip

    if plan.pointwise:
        per_group(x.reshape(-1, plan.C), weight.reshape(plan.O, plan.Cg), y2, plan.Cg)
        return out
    wr = pack(weight, ws) if packed is None else packed
    geo, Wo, K = _geometry(plan), plan.Wo, plan.K
    if method == "implicit":
        for g in range(G):
            go = slice(g * Og, (g + 1) * Og)
            conv_gemm(x, (*geo, g), wr[go], y2[:, go], bias[go] if has_bias else None, activation)
        return out
    col = ws.get("col", plan.chunk * Wo * K, x.dtype)
    for r0 in range(0, plan.rows, plan.chunk):
        nr = min(plan.chunk, plan.rows - r0)
        m = nr * Wo
        c2 = col[: m * K].reshape(m, K)
        im2col[launch(m * K)](x, c2, geo, r0, nr)
        per_group(c2, wr, y2[r0 * Wo : r0 * Wo + m], plan.Kg)
    return out


def conv_backward(x, weight, dy, stride, pads, dilation, groups, dx, dweight, dbias,
                  method: str = "im2col", workspace: DeviceWorkspace | None = None):  # fmt: skip
    """Gradients of :func:`conv_forward` given dy (N, Ho, Wo, O): overwrites dx (like x),
    dweight (like weight) and dbias (O,); any may be None to skip it (no dx work at all then).
    ``method`` "direct" runs the direct kernels, any other im2col."""
    ws = DEVICE_WORKSPACE if workspace is None else workspace
    plan = _plan(x, weight, stride, pads, dilation, groups, dy, ws)
    dy2 = dy.reshape(-1, plan.O)
    if dbias is not None:
        column_sums(dy2, dbias)
    if plan.N == 0:  # an empty batch: zero gradients, as on the CPU
        for grad in (dx, dweight):
            if grad is not None:
                fill(grad, 0)
        return
    if dx is None and dweight is None:
        return
    geo = _geometry(plan)
    if method == "direct":
        if dx is not None:
            direct.input_grad_kernel(x.dtype.char)[launch(dx.size)](dy, weight, dx, geo)
        if dweight is not None:
            threads = direct.reduce_threads(plan.rows * plan.Wo)
            direct.weight_grad_kernel(x.dtype.char, threads)[dweight.size, threads](x, dy, dweight, geo)
        return
    G, Og, Cg, O = plan.G, plan.Og, plan.Cg, plan.O
    if plan.pointwise:
        x2, w2 = x.reshape(-1, plan.C), weight.reshape(O, Cg)
        for g in range(G):
            go, gc = slice(g * Og, (g + 1) * Og), slice(g * Cg, (g + 1) * Cg)
            if dweight is not None:
                gemm(dy2[:, go], x2[:, gc], out=dweight.reshape(O, Cg)[go], trans_a=True)
            if dx is not None:
                gemm(dy2[:, go], w2[go], out=dx.reshape(-1, plan.C)[:, gc])
        return
    Kg, K, Wo = plan.Kg, plan.K, plan.Wo
    wr = pack(weight, ws) if dx is not None else None
    # dW in column order; for a 1xK kernel that is dweight itself
    dwr = None
    if dweight is not None:
        dwr = dweight.reshape(O, Kg) if plan.T == 1 else ws.get("dw", O * Kg, x.dtype).reshape(O, Kg)
    col = ws.get("col", plan.chunk * Wo * K, x.dtype)
    for r0 in range(0, plan.rows, plan.chunk):
        nr = min(plan.chunk, plan.rows - r0)
        m = nr * Wo
        c2 = col[: m * K].reshape(m, K)
        dyc = dy2[r0 * Wo : r0 * Wo + m]
        if dwr is not None:
            im2col[launch(m * K)](x, c2, geo, r0, nr)
            for g in range(G):
                go = slice(g * Og, (g + 1) * Og)
                gemm(dyc[:, go], c2[:, g * Kg : (g + 1) * Kg], out=dwr[go], trans_a=True, accumulate=r0 > 0)
        if dx is not None:
            for g in range(G):
                go = slice(g * Og, (g + 1) * Og)
                gemm(dyc[:, go], wr[go], out=c2[:, g * Kg : (g + 1) * Kg])
            col2im(x.dtype.char)[launch(col2im_threads(geo, r0, nr))](c2, dx, geo, r0, nr)
    if dweight is not None and plan.T > 1:
        unpack_weight[launch(dweight.size)](dwr, dweight)
