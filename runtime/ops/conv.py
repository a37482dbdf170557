"""Convolution ops: ``conv`` (N x H x W x C) and ``conv1d`` (N x L x C) over the im2col + GEMM
kernels in runtime/kernels/cpu/conv.py, or, in optimised inference for the layers the ``winograd``
pass marked (``algorithm``), Winograd's in runtime/kernels/cpu/winograd.py. Depthwise layers
(groups = input channels) run the direct kernels of runtime/kernels/cpu/depthwise.py.

The geometry (kernel, stride, dilation, and the possibly asymmetric ``same`` padding) comes from
the layer type itself, so the runtime and the compiler's shape rule cannot disagree. A 1-D signal
runs as an image of height 1 and its (O, I, K) weight as (O, I, 1, K): views, no copies.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..backend import CPU
from ..kernels.cpu.activation import RELU
from ..kernels.cpu.conv import ConvWorkspace, conv2d_backward, conv2d_forward, pack_weight
from ..kernels.cpu.direct import scratch_size
from ..kernels.cpu.depthwise import depthwise_backward, depthwise_forward, is_depthwise, pack_depthwise_weight
from ..kernels.cpu.epilogue import NONE, activation_kind, bias_residual_activation, channel_rows
from ..kernels.cpu import depthwise_pointwise, pointwise, smallconv
from ..kernels.cpu.gemm_epilogue import POINTWISE_MAX_WEIGHT_BYTES, bind_columns, bind_pointwise, pointwise_applies
from ..kernels.cpu.blocked import scratch_size as blocked_scratch_size
from ..kernels.cpu.serial import bind_bias_activation, direct_forward_serial, im2col_serial, planar_forward_serial
from ..kernels.cpu.small_gemm import BLAS_SERIAL_BELOW
from ..kernels.cpu.stem import bind_stem, stem_applies
from ..kernels.cpu.winograd import transform_weight, winograd_forward
from ..kernels.cpu.workspace import holding
from .base import Context, Op, as_image, register, user_shape, window_geometry


@register("conv", "conv1d")
class ConvOp(Op):
    strided_out = True
    fuses_activation = True
    writes_over_residual = True

    def __init__(self, layer, in_shapes, out_shape, dtype, backend=CPU):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        kernels, strides, pads, dilations = window_geometry(layer, in_shapes[0], out_shape)
        self._stride = tuple(int(s) for s in strides)
        self._pads = tuple((int(a), int(b)) for a, b in pads)
        self._dilation = tuple(int(d) for d in dilations)
        self._groups = int(layer.groups)
        self._in_image = as_image(tuple(in_shapes[0]))
        self._out_image = as_image(tuple(out_shape))
        cin = self._in_image[-1]
        self._weight_image = (int(layer.filters), cin // self._groups, *kernels)
        self._depthwise = is_depthwise(cin, self._groups)
        self.workspace = ConvWorkspace()
        #: None (im2col) or "winograd" (F(2x2, 3x3)); set by the inference plan, which then calls
        #: prepare_weights after every weight change.
        self.algorithm: str | None = None
        #: What the algorithm computes from the weight once per weight change instead of every
        #: forward: im2col's column-order weight, or Winograd's U = G g G^T where there are no
        #: winograd_panels (None: per call, or Winograd on the CPU, whose panels are all it reads).
        self.prepared_weight: np.ndarray | None = None
        #: Set by the inference plan for a node with ``residual`` (fuse-residual): inputs[1] is
        #: added after the bias, before the activation, in one epilogue pass.
        self.residual = False
        #: Inference, 1x1 convs with few outputs (pointwise.takes): the weight as pointwise.py's
        #: panels and the padded bias, for its GEMM with the epilogue fused (None: BLAS's path).
        self.panels: tuple[np.ndarray, np.ndarray] | None = None
        #: Likewise small windows over few channels (smallconv.takes): smallconv.py's direct conv.
        self.window: tuple[np.ndarray, np.ndarray] | None = None
        #: Winograd's U as pointwise.stacked_panels, for its GEMMs on pointwise.py's tile.
        self.winograd_panels: np.ndarray | None = None
        #: Set by the inference plan where a depthwise conv is streamed into this 1x1 conv
        #: (fuse-depthwise, :meth:`streams`): that conv's op, whose input this conv then reads.
        self.depthwise: ConvOp | None = None
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _weight(self, array: np.ndarray) -> np.ndarray:
        return array.reshape(self._weight_image)

    def prepare_weights(self) -> None:
        """Derive the algorithm's weight from ``params["weight"]``; the inference plan calls it
        from ``refresh``, since its weights change only then."""
        weight = self._weight(self.params["weight"])
        if self.algorithm is None and self._depthwise:
            self.prepared_weight = pack_depthwise_weight(weight)
            return
        if self.algorithm is None:
            # A 1x1 weight is already in column order (pack_weight gives a view).
            self.prepared_weight = None if weight.shape[2:] == (1, 1) else pack_weight(weight)
            self.panels = self.window = None
            if self.backend is not CPU or self.residual or self._depthwise or self.depthwise is not None:
                return  # (a conv streaming a depthwise conv packs its weight when it binds)
            bias = pointwise.padded_bias(self.params.get("bias"), weight.shape[0], self.dtype)
            if pointwise.takes(weight.shape, self._stride, self._pads, self._dilation, self._groups, self.activation):
                self.panels = (pointwise.pack_panels(weight), bias)
            elif smallconv.takes(weight.shape, self._stride, self._dilation, self._groups, self.activation,
                                 self._out_image[-2], self.dtype):
                self.window = (smallconv.pack_window(weight), bias)
            return
        if self.algorithm != "winograd":
            raise ValueError(f"{self.layer.op}: unknown algorithm {self.algorithm!r}")
        if self._weight_image[2:] != (3, 3) or self._stride != (1, 1) or self._dilation != (1, 1) or self._groups != 1:
            raise ValueError(f"{self.layer.op}: {self.algorithm} needs a 3x3, stride-1, undilated, ungrouped conv")
        transformed = transform_weight(weight, self.dtype)
        if self.backend is CPU:
            # its 16 GEMMs on pointwise.py's tile (winograd_forward's ``panels``), which then reads nothing
            # else of the weight: U is not kept
            self.winograd_panels, self.prepared_weight = pointwise.stacked_panels(transformed), None
        else:
            self.prepared_weight, self.winograd_panels = transformed, None

    def prepared_bytes(self) -> int:
        """Bytes of the arrays prepare_weights derived (packed or transformed weights, padded bias)."""
        arrays = [self.prepared_weight, self.winograd_panels, *(self.panels or ()), *(self.window or ())]
        return sum(a.nbytes for a in arrays if a is not None)

    def streams(self, depthwise: Op) -> bool:
        """Whether this inference 1x1 conv can compute the depthwise conv ``depthwise`` that it reads
        (runtime/kernels/cpu/depthwise_pointwise.py) on this backend and dtype."""
        if not isinstance(depthwise, ConvOp) or self.backend is not CPU or depthwise.backend is not CPU:
            return False
        if (depthwise.layer.why_not_streamed(user_shape(tuple(depthwise.in_shapes[0])))
                or self.layer.why_not_streaming(user_shape(tuple(self.in_shapes[0])))):
            return False  # (the layer's rules, which fuse-depthwise and ir.verify ask too)
        if self.algorithm is not None or self.residual or self.dtype not in (np.float32, np.float64):
            return False
        if self.params["weight"].nbytes > POINTWISE_MAX_WEIGHT_BYTES:
            return False  # (the fused GEMM does not block K: past it BLAS's GEMM was as fast, gemm_epilogue.py)
        if depthwise.activation not in (None, "relu") or self.activation not in (None, "relu"):
            return False
        weight = depthwise._weight_image
        return depthwise_pointwise.fits(depthwise._in_image[-1], weight[2:], weight[0] // depthwise._in_image[-1],
                                        self.dtype)

    def forward(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> None:
        if self.depthwise is not None and not ctx.train:
            self._bind_depthwise(inputs[0], out)()
            return
        x = inputs[0]
        n = x.shape[0]
        bias = self.params.get("bias")
        prepared = None if ctx.train else self.prepared_weight
        if not ctx.train and self.algorithm == "winograd":
            winograd_forward(
                x.reshape(n, *self._in_image),
                prepared,
                bias,
                self._pads,
                out.reshape(n, *self._out_image),
                self.workspace,
                activation_kind(self.activation),
                panels=self.winograd_panels,
            )
            return
        residual = self.residual and not ctx.train
        if self.panels is not None and not ctx.train:
            # inference 1x1 conv with few outputs: pointwise.py's GEMM, bias and relu fused
            channels = self._out_image[-1]
            scratch = pointwise.thread_scratch(self.workspace, self.dtype)
            pointwise.pointwise_forward(x.reshape(-1, self._in_image[-1]), *self.panels, self.activation == "relu",
                                        channel_rows(out, channels, "conv"), scratch)
            self._x = x
            return
        if self.window is not None and not ctx.train:
            # inference small window over few channels: smallconv.py's direct conv, bias and relu fused
            x4 = x.reshape(n, *self._in_image)
            scratch = self.workspace.get("window", smallconv.scratch_elements(x4.shape, self._pads), self.dtype)
            smallconv.window_forward(x4, self._weight_image, self._stride, self._pads, *self.window,
                                     self.activation == "relu", out.reshape(n, *self._out_image), scratch)
            self._x = x
            return
        if self._depthwise:
            if residual:
                raise ValueError(f"{self.layer.op}: the depthwise kernel has no residual epilogue")
            depthwise_forward(x.reshape(n, *self._in_image), self._weight(self.params["weight"]), bias, self._stride,
                              self._pads, self._dilation, out.reshape(n, *self._out_image),
                              activation_kind(self.activation), packed=prepared)  # fmt: skip
            self._x = x
            return
        shortcut = inputs[1] if residual else None
        if residual and np.may_share_memory(shortcut, out):
            # written over its shortcut (plan-memory's in_place): the GEMM below writes out before the
            # epilogue reads the shortcut, so that reads a copy (gemm_epilogue.py's kernel needs none)
            shortcut = self.workspace.get("shortcut", shortcut.size, shortcut.dtype).reshape(shortcut.shape)
            np.copyto(shortcut, inputs[1])
        conv2d_forward(
            x.reshape(n, *self._in_image),
            self._weight(self.params["weight"]),
            None if residual else bias,
            self._stride,
            self._pads,
            self._dilation,
            self._groups,
            out.reshape(n, *self._out_image),
            self.workspace,
            NONE if residual else activation_kind(self.activation),
            packed=prepared,
            keep=ctx.train,
        )
        if residual:
            channels = self._out_image[-1]
            bias_residual_activation(channel_rows(out, channels, "conv"), bias, shortcut.reshape(-1, channels),
                                     activation_kind(self.activation))
        self._x = x

    def bind(self, inputs: list[np.ndarray], out: np.ndarray, ctx: Context) -> Callable[[], None]:
        """forward on fixed arrays; a small im2col-path conv (the workspace plan's ``serial``:
        fewer column elements than SERIAL_BELOW, e.g. all of LeNet-5's at batch 1) becomes a
        closure over its plan, views and weights that runs the single-thread kernels (serial.py)."""
        small = None
        if self.depthwise is not None and not ctx.train:
            return self._bind_depthwise(inputs[0], out)
        if not ctx.train and self.backend is CPU:
            # register-blocked kernels with the epilogue in registers (stem.py, gemm_epilogue.py), else small
            # work; a conv that prepare_weights gave pointwise.py's panels or smallconv.py's window runs those
            # (forward), measured faster on GoogLeNet's small layers
            small = (self._bind_stem(inputs[0], out)
                     or self._bind_whole(inputs[0], out)
                     or (self.panels is None and self.window is None and self._bind_pointwise(inputs, out))
                     or self._bind_small(inputs[0], out))
        return small or super().bind(inputs, out, ctx)

    def _bind_depthwise(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None]:
        """The depthwise conv ``self.depthwise`` on x and this 1x1 conv after it, in one kernel."""
        dw, n = self.depthwise, x.shape[0]
        if not (x.flags.c_contiguous and x.dtype == out.dtype == self.dtype):
            raise ValueError(f"{self.layer.op}: the fused depthwise kernel needs a contiguous {self.dtype} input")
        channels = self._out_image[-1]
        return depthwise_pointwise.bind_depthwise_pointwise(
            x.reshape(n, *dw._in_image), dw._weight(dw.params["weight"]), dw.params.get("bias"), dw._stride, dw._pads,
            dw._dilation, dw.activation == "relu", self.params["weight"].reshape(channels, -1), self.params.get("bias"),
            self.activation == "relu", channel_rows(out, channels, "conv"), self._out_image[:2], self.workspace)

    def _bind_whole(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
        """A window over the whole unpadded image (LeNet-5's c5) is a fully connected layer on x's
        (N, H*W*C) view, bound by the fc's rule (dense.py): from BLAS_SERIAL_BELOW multiply-adds,
        pointwise.py's GEMM with the bias and a relu fused, in Numba's pool; a tanh or sigmoid
        after it on one thread. c5 -> tanh in ``cnnlang bench lenet5`` (alternating processes, ms):
        batch 8 0.087-0.094 on blocked.py's GEMM and epilogue.py's pass, 0.021-0.024 here; batch
        64 0.159-0.285 / 0.091-0.095."""
        if self.algorithm is not None or self.residual or self._groups != 1:
            return None
        if not (x.flags.c_contiguous and out.flags.c_contiguous and x.dtype == out.dtype == self.dtype):
            return None
        n = x.shape[0]
        plan = self.workspace.plan(x.reshape(n, *self._in_image), self._weight(self.params["weight"]), self._stride,
                                   self._pads, self._dilation, 1, out.reshape(n, *self._out_image))
        wcol, kind = self._column_weight(), activation_kind(self.activation)
        if not plan.whole or wcol is None or plan.rows * plan.O * plan.K < BLAS_SERIAL_BELOW:
            return None
        y2 = out.reshape(plan.rows, plan.O)
        fused = kind if kind in (NONE, RELU) else NONE
        gemm = bind_pointwise(x.reshape(plan.rows, plan.K), wcol, self.params.get("bias"), y2, fused,
                              self.workspace)
        if fused == kind:
            return gemm
        activation = bind_bias_activation(y2, None, kind)

        def gemm_then_activation() -> None:
            gemm()
            activation()

        return holding(gemm_then_activation, *gemm.held)

    def _bind_pointwise(self, inputs: list[np.ndarray], out: np.ndarray) -> Callable[[], None] | None:
        """An ungrouped conv over many pixels (ResNet's bottleneck 1x1s, its stride-2 convs): the
        GEMM and its bias, residual and relu in one pass (runtime/kernels/cpu/gemm_epilogue.py), on
        x's view for a 1x1, stride-1, unpadded conv, else on im2col's columns."""
        x = inputs[0]
        channels = self._out_image[-1]
        pixels = out.size // channels if out.size else 0
        weight_bytes = self.params["weight"].nbytes
        if (self.algorithm is not None or self._depthwise or self._groups != 1 or self._dilation != (1, 1)
                or not pointwise_applies(pixels, activation_kind(self.activation), weight_bytes)):
            return None
        residual = inputs[1] if self.residual else None
        if not (x.flags.c_contiguous and (residual is None or residual.flags.c_contiguous)
                and x.dtype == out.dtype == self.dtype):
            return None
        kind, y2, bias = activation_kind(self.activation), channel_rows(out, channels, "conv"), self.params.get("bias")
        weight = self._weight(self.params["weight"])
        if self._weight_image[2:] == (1, 1) and self._stride == (1, 1) and self._pads == ((0, 0), (0, 0)):
            return bind_pointwise(x.reshape(pixels, -1), weight.reshape(channels, -1), bias, y2, kind, self.workspace,
                                  None if residual is None else residual.reshape(pixels, channels))
        n = x.shape[0]
        x4 = x.reshape(n, *self._in_image)
        plan = self.workspace.plan(x4, weight, self._stride, self._pads, self._dilation, 1,
                                   out.reshape(n, *self._out_image))
        wcol = self._column_weight()
        if residual is not None or plan.whole or wcol is None:
            return None  # (a residual conv is 1x1; the whole-image window is one GEMM on x's view)
        if plan.serial and self._weight_image[2:] != (1, 1):
            return None  # _bind_small's single-thread columns and GEMM
        # a small strided 1x1 runs here even when serial: its columns are a gather of every other
        # pixel, cheaper fused than copied (batch 8, ms, alternating processes: 16x32x32 1x1/2 -> 32
        # 0.081-0.093 serial, 0.054-0.058 here; 32x16x16 -> 64 0.051-0.067 / 0.046-0.078)
        if plan.planar or plan.blocked:
            # few channels: the direct kernels (LeNet-5's c1 at batch 8, relu: 0.38 -> 0.16 ms)
            return None
        return bind_columns(x4, wcol, bias, y2, kind, self.workspace, plan)

    def _column_weight(self) -> np.ndarray | None:
        """The weight in im2col's column order (O, K) for a bound forward: prepare_weights' packing,
        or a 1x1 weight's own view, which has that order already (prepare_weights keeps none): the
        strided 1x1 shortcuts of ResNet's downsampling blocks run the bound kernels too."""
        if self._weight_image[2:] == (1, 1) and self._groups == 1:
            return self.params["weight"].reshape(self._weight_image[0], -1)
        return self.prepared_weight

    def _bind_stem(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
        """Few input channels, many output channels (the 7x7 stem of ResNet and GoogLeNet): the
        register-blocked direct kernel of runtime/kernels/cpu/stem.py, bias and relu fused."""
        kind = activation_kind(self.activation)
        if self.algorithm is not None or self.residual or self._depthwise or not stem_applies(
                (0, *self._in_image), self._weight_image, self._dilation, self._groups, kind):
            return None
        if not (x.flags.c_contiguous and out.flags.c_contiguous and x.dtype == out.dtype == self.dtype):
            return None
        n = x.shape[0]
        return bind_stem(x.reshape(n, *self._in_image), self._weight(self.params["weight"]), self.params.get("bias"),
                         self._stride, self._pads, out.reshape(n, *self._out_image), kind, self.workspace)

    def _bind_small(self, x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
        if self.algorithm is not None or self._depthwise or self.residual or self._groups != 1:
            return None
        if not (x.flags.c_contiguous and out.flags.c_contiguous and x.dtype == out.dtype == self.dtype):
            return None  # (reshapes of other layouts would be copies, stale once bound)
        n = x.shape[0]
        x4, y4 = x.reshape(n, *self._in_image), out.reshape(n, *self._out_image)
        weight = np.ascontiguousarray(self._weight(self.params["weight"]))
        ws = self.workspace
        plan = ws.plan(x4, weight, self._stride, self._pads, self._dilation, self._groups, y4)
        if not plan.serial or plan.N == 0 or plan.chunk < plan.rows:
            return None
        wcol = self._column_weight()
        if wcol is None and not plan.pointwise:
            return None
        bias = self.params.get("bias")
        kind = activation_kind(self.activation)
        y2, xf, dtype, matmul = out.reshape(-1, plan.O), x.reshape(-1), self.dtype, np.matmul
        if plan.planar or plan.direct_forward:
            wf, vector = weight.reshape(-1), np.empty(0, dtype) if bias is None else bias
            has_bias, yf = bias is not None, out.reshape(-1)
            activation = bind_bias_activation(y2, None, kind)  # the bias is in the kernel
        if plan.planar:
            # one input channel (LeNet-5's c1): the register tile, as the parallel forward runs it (batch 1:
            # 7.9-13.8 us against direct.py's 16.8-22.6, one process alternating, AMD EPYC)
            size, geo = blocked_scratch_size(plan.blocked_geo, dtype.itemsize), plan.blocked_geo

            def planar() -> None:
                planar_forward_serial(xf, wf, vector, has_bias, yf, geo, ws.get("blocked", size, dtype).reshape(1, size))
                activation()

            return planar
        if plan.direct_forward:
            size, geo = scratch_size(plan.direct_geo), plan.direct_geo

            def direct() -> None:
                direct_forward_serial(xf, wf, vector, has_bias, yf, geo, ws.get("direct", size, dtype).reshape(1, size))
                activation()

            return direct
        epilogue = bind_bias_activation(y2, bias, kind)
        if plan.pointwise or plan.whole:
            # the column matrix is x's own view: one GEMM
            a = x.reshape(-1, plan.C) if plan.pointwise else x.reshape(plan.rows, plan.K)
            b = (weight.reshape(plan.O, plan.Cg) if plan.pointwise else wcol).T

            def gemm() -> None:
                matmul(a, b, out=y2)
                epilogue()

            return gemm
        # serial implies one chunk: all output rows' columns at once
        m, K, geo, rows = plan.rows * plan.Wo, plan.K, plan.geo, plan.rows
        wrT = wcol.T

        def columns() -> None:
            col = ws.get("col", m * K, dtype)
            im2col_serial(xf, col, geo, 0, rows)
            matmul(col.reshape(m, K), wrT, out=y2)
            epilogue()

        return columns

    def _gradient_targets(self):
        """(x, dx, dweight, dbias) for a backward: the forward's input, and where each gradient
        goes (None where none is wanted). Shared with the CUDA op."""
        x = self._x
        if x is None:
            raise RuntimeError(f"{self.layer.op}: backward before forward")
        dx = None
        if self.need_input_grad[0]:
            dx = self._dx = self.scratch(self._dx, tuple(x.shape))
        # Layers with fixed weights (frozen, or written out) get no parameter gradients.
        trainable = self.layer.trainable
        dweight = self._weight(self.grads["weight"]) if trainable and "weight" in self.grads else None
        dbias = self.grads["bias"] if trainable and "bias" in self.grads else None
        return x, dx, dweight, dbias

    def backward(self, dy: np.ndarray) -> list[np.ndarray | None]:
        x, dx, dweight, dbias = self._gradient_targets()
        n = x.shape[0]
        if self._depthwise:
            depthwise_backward(x.reshape(n, *self._in_image), self._weight(self.params["weight"]),
                               dy.reshape(n, *self._out_image), self._stride, self._pads, self._dilation,
                               None if dx is None else dx.reshape(n, *self._in_image), dweight, dbias)  # fmt: skip
            return [dx]
        conv2d_backward(
            x.reshape(n, *self._in_image),
            self._weight(self.params["weight"]),
            dy.reshape(n, *self._out_image),
            self._stride,
            self._pads,
            self._dilation,
            self._groups,
            None if dx is None else dx.reshape(n, *self._in_image),
            dweight,
            dbias,
            self.workspace,
            kept=True,  # x is unchanged since forward: its columns serve if forward kept them
        )
        return [dx]
