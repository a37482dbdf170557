"""``cnnlang export --functions``: every block instance becomes a call of an ONNX local function
(FunctionProto), so a viewer such as Netron shows the model's own blocks.

Instances whose bodies are the same after renaming (``bottleneck(64)`` twice) share one function;
instances that differ (another stride, a projection shortcut) get ``bottleneck_2`` and so on, each
with the call's signature as its doc string. A function's weights are inputs of the function, so
the initializers stay in the main graph under their full names. Inside a function, tensors and
nodes are named relative to the instance (``conv1``, ``conv1.weight``); the call node carries the
instance's path (``bottleneck3``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass
class ExportedNode:
    """One ONNX node and the cnnlang block instance it sits in (for --functions)."""

    proto: object
    path: tuple[str, ...]


def group_into_functions(onnx, nodes: list, initializers: set[str], outputs: list[str], scopes: dict,
                         domain: str, opset: int):
    """(main-graph nodes, FunctionProtos) for ``nodes`` (ExportedNode: proto and block path);
    ``outputs``: the graph's outputs, which leave every function that computes them."""
    readers = defaultdict(int)
    for node in nodes:
        for name in node.proto.input:
            readers[name] += 1
    for name in outputs:
        readers[name] += 1
    grouper = _Grouper(onnx, initializers, scopes, domain, opset, readers)
    top = grouper.level(nodes, ())
    return top, grouper.functions


class _Grouper:
    def __init__(self, onnx, initializers, scopes, domain, opset, readers):
        self.onnx, self.initializers, self.scopes = onnx, initializers, scopes
        self.domain, self.opset, self.readers = domain, opset, readers
        self.functions: list = []
        self._by_body: dict[bytes, str] = {}
        self._names: dict[str, int] = {}

    def level(self, nodes: list, prefix: tuple[str, ...]) -> list:
        """The nodes at this level: plain nodes as they are, each child block instance as one call."""
        out, index = [], 0
        while index < len(nodes):
            node = nodes[index]
            if len(node.path) <= len(prefix):
                out.append(node)
                index += 1
                continue
            child = node.path[: len(prefix) + 1]
            end = index
            while end < len(nodes) and nodes[end].path[: len(child)] == child:
                end += 1
            members = nodes[index:end]
            scope = self.scopes.get(child)
            if scope is not None and scope.block is not None:
                out.append(self.call(child, scope, self.level(members, child)))
            else:  # a labelled repetition: a name in reports, not a block
                out += self.level(members, child)
            index = end
        return out

    def call(self, path: tuple[str, ...], scope, members: list):
        helper = self.onnx.helper
        produced = [o for m in members for o in m.proto.output]
        used_inside = defaultdict(int)
        for m in members:
            for name in m.proto.input:
                used_inside[name] += 1
        external = list(dict.fromkeys(i for m in members for i in m.proto.input if i not in produced))
        data = [name for name in external if name not in self.initializers]
        weights = [name for name in external if name in self.initializers]
        # A result leaves the function when something outside reads it (graph outputs count as readers).
        results = [o for o in produced if self.readers[o] > used_inside[o]]
        prefix = "/".join(path) + "/"
        formal = {name: ("input" if len(data) == 1 else f"input{i}") for i, name in enumerate(data)}

        def local(name: str) -> str:
            return formal.get(name) or (name[len(prefix):] if name.startswith(prefix) else name)

        body = []
        for m in members:
            proto = type(m.proto)()
            proto.CopyFrom(m.proto)
            proto.name = local(proto.name)
            proto.input[:] = [local(i) for i in proto.input]
            proto.output[:] = [local(o) for o in proto.output]
            body.append(proto)
        inputs = [local(n) for n in data + weights]
        outputs = [local(n) for n in results]
        name = self._function_name(scope.block, body, inputs, outputs, scope.signature)
        proto = helper.make_node(name, data + weights, results, name="/".join(path), domain=self.domain)
        return ExportedNode(proto, path[:-1])

    def _function_name(self, block: str, body: list, inputs: list, outputs: list, signature: str) -> str:
        helper = self.onnx.helper
        opsets = [helper.make_opsetid("", self.opset), helper.make_opsetid(self.domain, 1)]
        draft = helper.make_function(self.domain, "_", inputs, outputs, body, opsets)
        key = draft.SerializeToString(deterministic=True)
        if key in self._by_body:
            return self._by_body[key]
        count = self._names[block] = self._names.get(block, 0) + 1
        name = block if count == 1 else f"{block}_{count}"
        function = helper.make_function(self.domain, name, inputs, outputs, body, opsets, doc_string=signature)
        self.functions.append(function)
        self._by_body[key] = name
        return name
