"""A PyTorch twin of any cnnlang network: the reference for tests and the benchmark baseline.

    from benchmarks.torch_reference import to_torch
    model = cnnlang.load("resnet18")
    net = model.build(seed=0, dtype="float64")
    twin = to_torch(model, net)            # same architecture, a copy of net's parameters and buffers
    y = twin(torch.from_numpy(x))          # == net.forward(x)

:class:`GraphModule` is a small graph interpreter: one torch layer per IR node, run in the IR's
topological order, so it handles every graph cnnlang can express (branches, ``add`` of any number
of inputs, ``concat``, several outputs). Layer by layer:

- ``conv``/``conv1d``: ``nn.Conv2d``/``nn.Conv1d`` with the padding from ``layer.padding_of``;
  asymmetric padding (``pad = same`` with an odd total) runs ``F.pad`` before an unpadded conv;
- ``maxpool``/``avgpool``: ``nn.MaxPool{1,2}d``/``nn.AvgPool{1,2}d`` (``ceil`` = ``ceil_mode``,
  ``count_pad`` = ``count_include_pad``), 1-D or 2-D following the input's rank;
- ``globalavgpool``: the mean over the spatial axes (keeping them as size 1);
- ``fc``: flatten (C, H, W order) then ``nn.Linear``; ``flatten``: ``torch.flatten(x, 1)``;
- ``softmax``: over dim 1 (channels); ``relu``, ``tanh``, ``sigmoid``;
- ``batchnorm``: ``nn.BatchNorm{1,2}d`` with the same eps, momentum and affine;
- ``lrn``: ``nn.LocalResponseNorm`` (flat inputs get a dummy spatial axis);
- ``dropout``: :class:`ReplayDropout` -- PyTorch's own dropout by default, or (for comparisons)
  off, or replaying a given keep mask so that both frameworks drop the same units;
- ``add``: the sum of all inputs; ``concat``: ``torch.cat`` on dim 1.

Parameter names are cnnlang's (``"<node>.<param>"``): :meth:`GraphModule.cnn_parameters`,
:meth:`GraphModule.cnn_buffers` and :meth:`GraphModule.cnn_grads` map them onto the torch tensors
(batchnorm ``gamma``/``beta`` are torch's ``weight``/``bias``).

Only benchmarks and tests import this module; cnnlang itself never needs torch.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlang import ir

__all__ = ["GraphModule", "ReplayDropout", "to_torch", "copy_state", "dropout_masks"]

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# ---- layers that PyTorch lacks as modules --------------------------------------------------


class PaddedConv(nn.Module):
    """A convolution with per-side padding: ``F.pad`` (zeros) and then an unpadded conv."""

    def __init__(self, conv: nn.Module, pads: tuple[tuple[int, int], ...]):
        super().__init__()
        self.conv = conv
        # F.pad lists the last axis first: (left, right, top, bottom).
        self.pad = tuple(p for pair in reversed(pads) for p in pair)

    @property
    def weight(self):
        return self.conv.weight

    @property
    def bias(self):
        return self.conv.bias

    def forward(self, x):
        return self.conv(F.pad(x, self.pad))


class GlobalAvgPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


class Flatten(nn.Module):
    def forward(self, x):
        return torch.flatten(x, 1)


class FullyConnected(nn.Module):
    """cnnlang's ``fc``: any input, read as flat features in C, H, W order."""

    def __init__(self, features: int, units: int, bias: bool):
        super().__init__()
        self.linear = nn.Linear(features, units, bias=bias)

    @property
    def weight(self):
        return self.linear.weight

    @property
    def bias(self):
        return self.linear.bias

    def forward(self, x):
        return self.linear(torch.flatten(x, 1))


class LRN(nn.Module):
    """``nn.LocalResponseNorm``, also for flat N x C inputs (which it rejects as they are)."""

    def __init__(self, size: int, alpha: float, beta: float, k: float):
        super().__init__()
        self.lrn = nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)

    def forward(self, x):
        if x.dim() == 2:
            return self.lrn(x.unsqueeze(-1)).squeeze(-1)
        return self.lrn(x)


class ReplayDropout(nn.Module):
    """Dropout with inverted scaling 1/(1-p) while training, identity in eval mode.

    ``mode``: ``"torch"`` (PyTorch's own random mask), ``"off"`` (identity even while training)
    or ``"replay"`` (multiply by ``self.mask`` -- a 0/1 keep mask of the input's shape -- and
    scale, so that another framework's draw can be reproduced exactly).
    """

    def __init__(self, p: float, mode: str = "torch"):
        super().__init__()
        self.p = p
        self.mode = mode
        self.mask: torch.Tensor | None = None

    def forward(self, x):
        if not self.training or self.p == 0 or self.mode == "off":
            return x
        if self.mode == "replay":
            if self.mask is None or self.mask.shape != x.shape:
                raise RuntimeError("ReplayDropout in replay mode needs a mask of the input's shape")
            return x * (self.mask.to(x.dtype) * (1.0 / (1.0 - self.p)))
        return F.dropout(x, self.p, training=True)


class Add(nn.Module):
    def forward(self, *xs):
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out = out + x
        return out


class Concat(nn.Module):
    def forward(self, *xs):
        return torch.cat(xs, dim=1)


# ---- one torch layer per IR node -------------------------------------------------------------


def _rank(shape: tuple[int, ...]) -> int:
    """Spatial rank of a per-example shape (C x H x W: 2, C x L: 1, flat: 0)."""
    return len(shape) - 1


def make_layer(op: str, layer, in_shapes: list[tuple[int, ...]], dropout: str = "torch") -> nn.Module:
    """The torch module that computes IR op ``op`` (bound ``layer``) on inputs of ``in_shapes``."""
    shape = in_shapes[0] if in_shapes else ()
    if op in ("conv", "conv1d"):
        rank = 1 if op == "conv1d" else 2
        cls = nn.Conv1d if rank == 1 else nn.Conv2d
        kernel = tuple(layer.kernel) * rank if len(layer.kernel) == 1 else tuple(layer.kernel)
        stride = tuple(layer.stride) * rank if len(layer.stride) == 1 else tuple(layer.stride)
        dilation = tuple(layer.dilation) * rank if len(layer.dilation) == 1 else tuple(layer.dilation)
        pads = layer.padding_of(shape)
        symmetric = all(a == b for a, b in pads)
        conv = cls(
            shape[0], layer.filters, kernel, stride=stride, padding=tuple(a for a, _ in pads) if symmetric else 0,
            dilation=dilation, groups=layer.groups, bias=layer.bias,
        )
        return conv if symmetric else PaddedConv(conv, pads)
    if op in ("maxpool", "avgpool"):
        rank = _rank(shape)
        if rank not in (1, 2):
            raise ValueError(f"{op} on a {len(shape)}-D input")

        def axes(value):
            value = tuple(value)
            return value * rank if len(value) == 1 else value

        kernel = axes(layer.kernel)
        stride = axes(layer.stride or layer.kernel)
        pads = tuple(a for a, _ in layer.padding_of(shape))
        if op == "maxpool":
            cls = nn.MaxPool1d if rank == 1 else nn.MaxPool2d
            return cls(kernel, stride, pads, dilation=axes(layer.dilation), ceil_mode=layer.ceil)
        cls = nn.AvgPool1d if rank == 1 else nn.AvgPool2d
        return cls(kernel, stride, pads, ceil_mode=layer.ceil, count_include_pad=layer.count_pad)
    if op == "globalavgpool":
        return GlobalAvgPool()
    if op == "fc":
        return FullyConnected(int(np.prod(shape)), layer.units, layer.bias)
    if op == "flatten":
        return Flatten()
    if op == "relu":
        return nn.ReLU()
    if op == "tanh":
        return nn.Tanh()
    if op == "sigmoid":
        return nn.Sigmoid()
    if op == "softmax":
        return nn.Softmax(dim=1)
    if op == "batchnorm":
        cls = nn.BatchNorm2d if _rank(shape) == 2 else nn.BatchNorm1d
        return cls(shape[0], eps=layer.eps, momentum=layer.momentum, affine=layer.affine)
    if op == "dropout":
        return ReplayDropout(layer.p, dropout)
    if op == "lrn":
        return LRN(layer.size, layer.alpha, layer.beta, layer.k)
    if op == "add":
        return Add()
    if op == "concat":
        return Concat()
    raise NotImplementedError(f"no PyTorch translation for op '{op}'")


# Per op: cnnlang parameter name -> attribute of the node's torch module.
_LAYER_PARAMS = {"weight": "weight", "bias": "bias"}
_PARAM_ATTRS = {
    "conv": _LAYER_PARAMS, "conv1d": _LAYER_PARAMS, "fc": _LAYER_PARAMS,
    "batchnorm": {"gamma": "weight", "beta": "bias"},
}


class GraphModule(nn.Module):
    """Runs a cnnlang IR graph with torch layers, node by node in topological order.

    ``forward(x)`` returns the primary output; with ``keep=True`` the value of every node is left
    in :attr:`values` (name → tensor, user layout), for node-by-node comparisons. The other
    outputs of the last pass are in :attr:`outputs`.
    """

    def __init__(self, model, dropout: str = "torch"):
        super().__init__()
        graph = model.graph
        self.input_node = graph.graph["input"]
        self.output_nodes = list(graph.graph["outputs"])
        self.steps: list[tuple[str, str, list[str]]] = []
        self.index: dict[str, int] = {}
        self.layers = nn.ModuleList()
        self.trainable: dict[str, bool] = {}
        for node in ir.layer_nodes(graph):
            data = graph.nodes[node]
            in_shapes = [tuple(graph.nodes[i]["shape"]) for i in data["inputs"]]
            module = make_layer(data["op"], data["layer"], in_shapes, dropout)
            self.index[node] = len(self.layers)
            self.layers.append(module)
            self.steps.append((node, data["op"], list(data["inputs"])))
            for name, _ in data["layer"].param_shapes(in_shapes).items():
                self.trainable[f"{node}.{name}"] = bool(data["layer"].trainable)
        self.values: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self._last_use = {source: position for position, (_, _, inputs) in enumerate(self.steps) for source in inputs}
        for name, param in self.cnn_parameters().items():
            param.requires_grad_(self.trainable[name])

    def module_of(self, node: str) -> nn.Module:
        return self.layers[self.index[node]]

    def forward(self, x: torch.Tensor, keep: bool = False) -> torch.Tensor:
        values = {self.input_node: x}
        needed = self._last_use
        for position, (node, _, inputs) in enumerate(self.steps):
            values[node] = self.layers[self.index[node]](*(values[i] for i in inputs))
            if not keep:
                # Let go of tensors nothing reads any more (autograd keeps what it needs).
                for source in set(inputs):
                    if needed[source] == position and source not in self.output_nodes:
                        del values[source]
        self.outputs = {name: values[name] for name in self.output_nodes}
        self.values = values if keep else {}
        return values[self.output_nodes[0]]

    # -- cnnlang names
    def cnn_parameters(self) -> dict[str, nn.Parameter]:
        out = {}
        for node, op, _ in self.steps:
            module = self.module_of(node)
            for cnn_name, attr in _PARAM_ATTRS.get(op, {}).items():
                value = getattr(module, attr, None)
                if isinstance(value, nn.Parameter):
                    out[f"{node}.{cnn_name}"] = value
        return out

    def cnn_buffers(self) -> dict[str, torch.Tensor]:
        out = {}
        for node, op, _ in self.steps:
            if op == "batchnorm":
                module = self.module_of(node)
                out[f"{node}.running_mean"] = module.running_mean
                out[f"{node}.running_var"] = module.running_var
        return out

    def cnn_grads(self) -> dict[str, np.ndarray | None]:
        return {
            name: None if p.grad is None else p.grad.detach().cpu().numpy()
            for name, p in self.cnn_parameters().items()
        }

    def dropout_layers(self) -> dict[str, ReplayDropout]:
        return {node: self.module_of(node) for node, op, _ in self.steps if op == "dropout"}


def copy_state(module: GraphModule, net) -> None:
    """Copy every parameter and buffer of the cnnlang network ``net`` into ``module``."""
    params, buffers = module.cnn_parameters(), module.cnn_buffers()
    missing = sorted((set(net.params) - set(params)) | (set(net.buffers) - set(buffers)))
    extra = sorted((set(params) - set(net.params)) | (set(buffers) - set(net.buffers)))
    if missing or extra:
        raise KeyError(f"state does not match: cnnlang only {missing[:5]}, torch only {extra[:5]}")
    with torch.no_grad():
        for name, target in {**params, **buffers}.items():
            source = net.params[name] if name in net.params else net.buffers[name]
            if tuple(target.shape) != source.shape:
                raise ValueError(f"{name}: torch {tuple(target.shape)} vs cnnlang {source.shape}")
            target.copy_(torch.from_numpy(np.ascontiguousarray(source)))


def to_torch(model, net=None, *, channels_last: bool = False, dropout: str = "torch", dtype=None) -> GraphModule:
    """A PyTorch module computing the same function as ``model`` (a compiled cnnlang Model).

    ``net``: a built cnnlang network whose parameters and buffers are copied in (and whose dtype
    the module takes); without it the module keeps PyTorch's own initialisation. ``dtype``
    overrides the dtype (a numpy or torch dtype). ``channels_last``: store 4-D weights in
    channels-last memory format (PyTorch's fastest CPU path; feed it channels-last inputs too,
    see :func:`to_input`). ``dropout``: ``"torch"``, ``"off"`` or ``"replay"`` (see
    :class:`ReplayDropout`). The module starts in eval mode, as a cnnlang network does.
    """
    module = GraphModule(model, dropout=dropout)
    if dtype is None:
        dtype = TORCH_DTYPES[np.dtype(net.dtype)] if net is not None else torch.float32
    elif not isinstance(dtype, torch.dtype):
        dtype = TORCH_DTYPES[np.dtype(dtype)]
    module.to(dtype)
    if net is not None:
        copy_state(module, net)
        module.train(bool(getattr(net, "training", False)))
    else:
        module.eval()
    if channels_last:
        module.to(memory_format=torch.channels_last)
    module.channels_last = channels_last
    return module


def to_input(x: np.ndarray, channels_last: bool = False, dtype=None) -> torch.Tensor:
    """A numpy N x C x ... batch as a torch tensor (channels-last memory for 4-D when asked)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    if dtype is not None:
        tensor = tensor.to(dtype if isinstance(dtype, torch.dtype) else TORCH_DTYPES[np.dtype(dtype)])
    if channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def dropout_masks(model, net, nodes: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """The keep masks (N x C x ..., 0/1) cnnlang's dropout layers drew in ``net``'s last forward
    pass, read from the layers' inputs and outputs: kept where the output is non-zero. Where the
    input itself is zero the draw cannot be seen; those count as kept (the forward value is zero
    either way, and in the zoo such zeros come from ReLU, which passes no gradient there)."""
    from cnnlang.runtime.ops import to_user

    values = net.plan.values
    graph = model.graph
    if nodes is None:
        nodes = [n for n in ir.layer_nodes(graph) if graph.nodes[n]["op"] == "dropout"]
    masks = {}
    for node in nodes:
        x = to_user(values[graph.nodes[node]["inputs"][0]])
        y = to_user(values[node])
        masks[node] = ((y != 0) | (x == 0)).astype(np.float64)
    return masks
