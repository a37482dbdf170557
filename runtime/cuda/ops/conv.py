"""Convolution ops on the GPU: ``conv`` (N x H x W x C) and ``conv1d`` (N x L x C, run as height
1) over runtime/kernels/cuda/conv.py (im2col + GEMM, or direct kernels for thin groups: see
there for which and why).

Everything the CPU op supports: stride, asymmetric padding, dilation, groups (depthwise
included), bias with a fused activation (optimised inference), and output straight into a
channel slice of a concat buffer. The inference plan's ``algorithm = "winograd"`` (which it sets
after construction, then calling ``prepare_weights``) runs as im2col here: there are no Winograd
kernels on the GPU; the weight is prepared in column order once per weight change all the same.
A fused residual (the ``fuse-residual`` pass) is added, with the activation, in a second pass
over the output (runtime/kernels/cuda/merge.py) rather than inside the GEMM's epilogue.
"""

from __future__ import annotations

from ...kernels.cuda.conv import conv_backward, conv_forward, conv_method, pack
from ...kernels.cuda.epilogue import NONE, activation_code
from ...kernels.cuda.merge import add_activation
from ...kernels.cuda.views import DEVICE_WORKSPACE, with_unit_axis
from ...ops.base import Context, register
from ...ops.conv import ConvOp


@register("conv", "conv1d", backend="cuda")
class CudaConvOp(ConvOp):
    """The CPU op's geometry and weight views (runtime/ops/conv.py), the GPU's kernels."""

    writes_over_residual = False  # (its residual pass reads the shortcut after the GEMM wrote the output)

    def __init__(self, layer, in_shapes, out_shape, dtype, backend):
        super().__init__(layer, in_shapes, out_shape, dtype, backend)
        cin = self._in_image[-1]
        #: "im2col", "implicit" or "direct" (runtime/kernels/cuda/conv.py); CNNLANG_CUDA_CONV
        #: overrides "auto"
        self.method = conv_method(self._groups, cin // self._groups, int(layer.filters) // self._groups)
        #: scratch shared by every conv on the device (kernels run in stream order)
        self.workspace = DEVICE_WORKSPACE

    def _image(self, out):
        """out as N x Ho x Wo x O; a strided 1-D ``out`` (a channel slice) gets its unit axis as a
        view, since device arrays reshape only when contiguous."""
        if out.ndim == 4:
            return out
        return out.reshape(out.shape[0], *self._out_image) if out.is_c_contiguous() else with_unit_axis(out, 1)

    def prepare_weights(self) -> None:
        """The column-order weight, kept while the weights stay (inference)."""
        if self.algorithm not in (None, "winograd"):
            raise ValueError(f"{self.layer.op}: unknown algorithm {self.algorithm!r}")
        self.prepared_weight = None
        if self.method != "direct" and self._weight_image[2:] != (1, 1):
            weight = self._weight(self.params["weight"])
            self.prepared_weight = pack(weight, out=self.backend.empty((weight.shape[0], weight[0].size), self.dtype))

    def forward(self, inputs, out, ctx: Context) -> None:
        x = inputs[0]
        n = x.shape[0]
        residual = self.residual and not ctx.train
        image = self._image(out)
        conv_forward(
            x.reshape(n, *self._in_image),
            self._weight(self.params["weight"]),
            self.params.get("bias"),
            self._stride,
            self._pads,
            self._dilation,
            self._groups,
            image,
            NONE if residual else activation_code(self.activation),
            self.method,
            packed=None if ctx.train else self.prepared_weight,
            workspace=self.workspace,
        )
        if residual:
            rows = image.reshape(-1, image.shape[3]) if image.is_c_contiguous() else None
            if rows is None:
                raise ValueError(f"{self.layer.op}: a fused residual needs an output of its own, not a channel slice")
            add_activation([rows, inputs[1].reshape(-1, image.shape[3])], rows, activation_code(self.activation))
        self._x = x

    def backward(self, dy):
        x, dx, dweight, dbias = self._gradient_targets()
        n = x.shape[0]
        conv_backward(
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
            self.method,
            workspace=self.workspace,
        )
        return [dx]
