"""A PyTorch twin of any cnnlang network: the reference for tests and the benchmark baseline.

    from cnnlang.compare.torch_graph import to_torch
    model = cnnlang.load("resnet18")
    net = model.build(seed=0, dtype="float64")
    twin = to_torch(model, net)            # same architecture, a copy of net's parameters and buffers
    y = twin(torch.from_numpy(x))          # == net.forward(x)

:class:`GraphModule` is a small graph interpreter: one torch layer per IR node, run in the IR's
topological order, so it handles every graph cnnlang can express (branches, ``add`` of any number
of inputs, ``concat``, several outputs). Each layer type gives its own twin
(``LayerType.torch_module``, helpers in ``cnnlang/layers/torch_twins.py``); ``dropout`` becomes
:class:`ReplayDropout` -- PyTorch's own dropout by default, or (for comparisons) off, or
replaying a given keep mask so that both frameworks drop the same units.

Parameter names are cnnlang's (``"<node>.<param>"``): :meth:`GraphModule.cnn_parameters`,
:meth:`GraphModule.cnn_buffers` and :meth:`GraphModule.cnn_grads` map them onto the torch tensors
through each layer's ``torch_names`` (batchnorm ``gamma``/``beta`` are torch's ``weight``/``bias``).

Benchmarks, tests and ``cnnlang bench --compare torch`` import this module; nothing else in cnnlang
needs torch.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn

from cnnlang import ir
from cnnlang.layers.torch_twins import ReplayDropout

__all__ = ["GraphModule", "ReplayDropout", "to_torch", "copy_state", "dropout_masks"]

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


# ---- one torch layer per IR node -------------------------------------------------------------


def make_layer(op: str, layer, in_shapes: list[tuple[int, ...]], dropout: str = "torch") -> nn.Module:
    """The torch module that computes IR op ``op`` (bound ``layer``) on inputs of ``in_shapes``:
    the layer's own twin (``LayerType.torch_module``), dropout in the requested mode."""
    if op == "dropout":
        return ReplayDropout(layer.p, dropout)
    return layer.torch_module(in_shapes)


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
        self.layer_types = {}
        for node in ir.layer_nodes(graph):
            data = graph.nodes[node]
            in_shapes = [tuple(graph.nodes[i]["shape"]) for i in data["inputs"]]
            module = make_layer(data["op"], data["layer"], in_shapes, dropout)
            self.index[node] = len(self.layers)
            self.layers.append(module)
            self.steps.append((node, data["op"], list(data["inputs"])))
            self.layer_types[node] = (data["layer"], in_shapes)
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
        for node, _, _ in self.steps:
            module = self.module_of(node)
            layer, in_shapes = self.layer_types[node]
            for cnn_name in layer.param_shapes(in_shapes):
                value = getattr(module, layer.torch_names.get(cnn_name, cnn_name), None)
                if isinstance(value, nn.Parameter):
                    out[f"{node}.{cnn_name}"] = value
        return out

    def cnn_buffers(self) -> dict[str, torch.Tensor]:
        out = {}
        for node, _, _ in self.steps:
            layer, in_shapes = self.layer_types[node]
            for name in layer.buffer_shapes(in_shapes):
                out[f"{node}.{name}"] = getattr(self.module_of(node), name)
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
