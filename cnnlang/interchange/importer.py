"""``cnnlang import``: an ONNX file → readable .cnn text and its weights in cnnlang's names.

The steps: read the ONNX nodes into layers (onnx_reader), recover residuals and branches
(structure), recover blocks (blocks), write the text (writer), compile it, and pair each
compiled layer with the imported layer it came from (both lists are in lowering order), which
names the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import InterchangeError
from .blocks import recover_blocks
from .onnx_reader import ImportedGraph, Layer, read_onnx
from .structure import recover_structure
from .writer import expand, flat_text, network_text


@dataclass
class Imported:
    text: str  # the .cnn source
    model: object  # the compiled cnnlang.Model
    weights: dict[str, np.ndarray]  # cnnlang parameter and buffer names → arrays
    structured: bool  # False: written as named tensors (no residual/concat/block recovery)


def import_onnx(path: str | Path, *, blocks: bool = True) -> Imported:
    """Convert the ONNX file at ``path``; InterchangeError when it cannot be."""
    from .. import ir
    from ..errors import CnnError
    from ..model import load

    graph = read_onnx(path)
    header = f"# Imported from {Path(path).name} by cnnlang import.\n"
    items = recover_structure(graph)
    if items is not None:
        body, found = recover_blocks(items) if blocks else (items, [])
        text, order = network_text(graph.name, graph.input_shape, body, found, header), expand(items)
    else:
        text, order = flat_text(graph, header), list(graph.layers)
    try:
        model = load(text)
    except CnnError as error:  # a bug here, not in the user's file: say what was written
        raise InterchangeError(f"the converted model does not compile ({error.message}); the text was:\n{text}") from None
    compiled = list(ir.layer_nodes(model.graph))
    return Imported(text, model, _weights(graph, model, compiled, order), items is not None)


def _weights(graph: ImportedGraph, model, compiled: list[str], order: list[Layer]) -> dict[str, np.ndarray]:
    nodes = model.graph.nodes
    if len(compiled) != len(order):
        raise InterchangeError(f"internal: {len(compiled)} compiled layers for {len(order)} imported ones")
    weights = {}
    for node, layer in zip(compiled, order):
        data = nodes[node]
        if data["op"] != layer.op or tuple(data["shape"]) != tuple(layer.shape):
            raise InterchangeError(
                f"internal: compiled layer {node} ({data['op']}, {data['shape']}) does not match "
                f"imported {layer.onnx_name or layer.id} ({layer.op}, {layer.shape})"
            )
        inputs = [nodes[i]["shape"] for i in data["inputs"]]
        wanted = {**data["layer"].param_shapes(inputs), **data["layer"].buffer_shapes(inputs)}
        for name, shape in wanted.items():
            value = np.asarray(layer.params[name], dtype=np.float32)
            weights[f"{node}.{name}"] = value.reshape(shape)
    return weights
