"""PyTorch state_dict names → cnnlang's, by execution order, layer kind and shape.

A safetensors file keeps no order (its header is sorted), so PyTorch's module order is read from
the names: modules sorted segment by segment, numbers numerically (``features.10`` after
``features.9``; ``layer1.0.conv3`` before ``layer1.0.downsample.0``), which is the order torch
registers them in every torchvision model. Each kind (convolution, fully connected, batchnorm) is
then paired in order with cnnlang's layers of that kind, and every pair must agree in shape. Where
the counts or a shape disagree, nothing is guessed: the error names both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..layers import format_shape
from . import InterchangeError

_BATCHNORM_NAMES = {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta",
                    "running_mean": "running_mean", "running_var": "running_var"}
_KINDS = {"conv": "conv", "conv1d": "conv", "fc": "fc", "batchnorm": "batchnorm"}
_IGNORED = ("num_batches_tracked",)


@dataclass
class Pair:
    kind: str
    torch_module: str
    node: str
    names: dict[str, str]  # PyTorch key → cnnlang name
    shape: tuple[int, ...]  # the weight's (or running_mean's) shape


def _natural(name: str) -> tuple:
    return tuple(tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", segment)) for segment in name.split("."))


def _torch_modules(arrays: dict[str, np.ndarray], skip: list[str]) -> dict[str, dict[str, np.ndarray]]:
    modules: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        module, _, leaf = key.rpartition(".")
        if leaf in _IGNORED or any(key == s or key.startswith(s.rstrip(".") + ".") for s in skip):
            continue
        modules.setdefault(module, {})[leaf] = value
    return dict(sorted(modules.items(), key=lambda item: _natural(item[0])))


def _kind(module: str, leaves: dict[str, np.ndarray]) -> str:
    if "running_mean" in leaves:
        return "batchnorm"
    weight = leaves.get("weight")
    if weight is not None and weight.ndim in (3, 4):
        return "conv"
    if weight is not None and weight.ndim == 2:
        return "fc"
    raise InterchangeError(
        f"PyTorch module '{module}' ({', '.join(f'{k} {format_shape(v.shape)}' for k, v in leaves.items())}) is not a "
        "convolution, linear or batchnorm layer; leave it out with --skip"
    )


def _model_layers(model) -> dict[str, list[tuple[str, dict]]]:
    """cnnlang's layers with weights, per kind, in execution order: (node, {name: shape})."""
    from .. import ir

    graph = model.graph
    by_kind: dict[str, list[tuple[str, dict]]] = {"conv": [], "fc": [], "batchnorm": []}
    for node in ir.layer_nodes(graph):
        data = graph.nodes[node]
        inputs = [graph.nodes[i]["shape"] for i in data["inputs"]]
        shapes = {**data["layer"].param_shapes(inputs), **data["layer"].buffer_shapes(inputs)}
        if shapes and data["op"] in _KINDS:
            by_kind[_KINDS[data["op"]]].append((node, shapes))
    return by_kind


def map_state_dict(model, arrays: dict[str, np.ndarray], skip: list[str] = ()) -> tuple[list[Pair], dict[str, np.ndarray]]:
    """(the pairs, in cnnlang's order; the arrays under cnnlang's names). InterchangeError lists
    every count or shape that does not fit."""
    modules = _torch_modules(arrays, list(skip))
    torch_by_kind: dict[str, list[str]] = {"conv": [], "fc": [], "batchnorm": []}
    for module, leaves in modules.items():
        torch_by_kind[_kind(module, leaves)].append(module)
    ours = _model_layers(model)
    problems, pairs, weights = [], [], {}
    for kind, layers in ours.items():
        theirs = torch_by_kind[kind]
        if len(theirs) != len(layers):
            extra = theirs[len(layers):] if len(theirs) > len(layers) else [n for n, _ in layers[len(theirs):]]
            side = "PyTorch's file" if len(theirs) > len(layers) else f"model '{model.name}'"
            problems.append(f"{kind}: the model has {len(layers)}, the file {len(theirs)}; {side} has more: "
                            f"{', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}")
            continue
        for position, ((node, shapes), module) in enumerate(zip(layers, theirs), start=1):
            pair, why = _pair(kind, node, shapes, module, modules[module])
            if why:
                problems.append(f"{kind} #{position}: {why}")
                continue
            pairs.append(pair)
            for key, name in pair.names.items():
                weights[f"{node}.{name}"] = np.asarray(modules[module][key.rpartition(".")[2]], dtype=np.float32).reshape(shapes[name])
    if problems:
        raise InterchangeError("the PyTorch weights do not map onto the model by order and shape:\n  " + "\n  ".join(problems))
    pairs.sort(key=lambda p: model.graph.nodes[p.node]["order"])
    return pairs, weights


def _pair(kind: str, node: str, shapes: dict, module: str, leaves: dict[str, np.ndarray]) -> tuple[Pair | None, str]:
    names = {}
    for leaf, value in leaves.items():
        name = _BATCHNORM_NAMES.get(leaf) if kind == "batchnorm" else leaf if leaf in ("weight", "bias") else None
        if name is None or name not in shapes:
            return None, f"PyTorch's {module}.{leaf} has no counterpart in cnnlang's {node} (it has {', '.join(shapes)})"
        if int(np.prod(value.shape)) != int(np.prod(shapes[name])) or (kind != "batchnorm" and tuple(value.shape) != tuple(shapes[name])):
            return None, (f"cnnlang's {node}.{name} is {format_shape(shapes[name])}, but PyTorch's {module}.{leaf} "
                          f"(the same position among the {kind} layers) is {format_shape(value.shape)}")
        names[f"{module}.{leaf}"] = name
    missing = sorted(set(shapes) - set(names.values()))
    if missing:
        return None, f"cnnlang's {node} needs {', '.join(missing)}, which PyTorch's {module} does not have"
    shape = shapes.get("weight", shapes.get("running_mean"))
    return Pair(kind, module, node, names, tuple(shape)), ""
