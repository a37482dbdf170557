"""The execution plan: the IR in topological order, each node bound to its op, with one
preallocated output buffer per node for the current batch size.

On the CPU the plan runs the graph after ``fuse_training`` (cnnlang/passes/fuse_training.py): a relu
after a batchnorm or a residual add runs inside it, which saves a pass over the tensor each way, and
so does a two-input add (with its relu) inside a batchnorm it reads. The relu (or add) keeps its
step (and op, unused) but runs nothing; its value is the producer's (``values`` maps both names to
it: the producer's pre-relu value is not kept), and its gradient goes to the producer, which gives
each of its inputs theirs (in ``op.grad_order``). An activation that only an average pooling reads
(LeNet-5's tanh -> avgpool) keeps its step and its buffer but runs nothing either: the pooling reads
the activation's input, writes the activation's value into that buffer, and its backward gives the
input's gradient. Per-parameter gradients are the same.

Backward is reverse-mode over the same order. A tensor that fans out collects the gradients of
all its consumers; ``add`` hands the same gradient to each input and ``concat`` splits it, so the
plan never writes into a gradient it was handed: the first sum goes into a buffer of its own
(one per such tensor, kept from one backward to the next), in one pass.

Arrays are the backend's (runtime/backend.py): the plan touches them only through its methods.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import networkx as nx
import numpy as np

from cnnlang import ir
from cnnlang.passes.fuse_training import fuse_training

from .backend import CPU, Backend, OutOfDeviceMemory
from .ops import Context, Op, internal_shape, make_op


@dataclass
class Step:
    node: str
    op: Op
    inputs: list[str]
    #: the node that computes this one's value (a relu fused into it), else None: the step runs
    #: nothing, and its gradient goes straight to that node
    fused_into: str | None = None
    #: the average pooling that computes this activation's value into the step's buffer (and takes
    #: its gradient with its own), else None: the step runs nothing
    pooled_by: str | None = None


class Plan:
    """``fuse``: run the graph after fuse_training (default: on the CPU, whose kernels fuse).
    ``graph`` is then that graph; ``steps`` still has one step per node of the original graph
    (with its op), a fused relu's marked ``fused_into`` its producer."""

    def __init__(
        self, graph: nx.DiGraph, dtype: np.dtype, input_grad: bool = False, backend: Backend = CPU,
        fuse: bool | None = None,
    ):
        if fuse is None:
            fuse = backend.name == CPU.name
        original = graph
        if fuse:
            graph = fuse_training(graph)
        self.graph = graph
        aliases = graph.graph.get("aliases", {}) if fuse else {}
        pooled = graph.graph.get("pooled", {}) if fuse else {}
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.input = graph.graph["input"]
        self.outputs: list[str] = list(graph.graph["outputs"])
        self.shapes = {n: internal_shape(original.nodes[n]["shape"]) for n in original.nodes}
        self.steps: list[Step] = []
        for node in ir.layer_nodes(original):
            source = graph if node in graph else original
            inputs = list(source.nodes[node]["inputs"])
            op = make_op(source, node, self.shapes, self.dtype, backend)
            op.activation = source.nodes[node].get("activation")
            if source.nodes[node].get("input_activation"):
                op.input_activation = source.nodes[node]["input_activation"]  # (an avgpool's: see above)
            op.need_input_grad = [i != self.input or input_grad for i in inputs]
            fused = aliases.get(node) if node not in graph else None
            self.steps.append(Step(node, op, inputs, fused, pooled.get(node) if node not in graph else None))
        self._pooled = {pool: activation for activation, pool in pooled.items()}  # pooling -> its activation
        self.batch = 0
        self.buffers: dict[str, np.ndarray] = {}
        self.values: dict[str, np.ndarray] = {}
        self._sums: dict[str, np.ndarray] = {}  # fanned-out tensor -> the buffer its gradients sum into

    def _allocate(self, batch: int) -> None:
        if batch == self.batch:
            return
        self.release()
        buffers = {}
        for step in self.steps:
            if step.fused_into is not None:
                continue
            try:
                buffers[step.node] = self.backend.empty((batch, *self.shapes[step.node]), self.dtype)
            except OutOfDeviceMemory as error:
                raise error.at(step.node) from None
        self.buffers = buffers
        self.batch = batch
        for step in self.steps:
            if step.node in self._pooled:
                step.op.activation_out = buffers[self._pooled[step.node]]

    def release(self) -> None:
        """Drop the batch's buffers and the values kept for backward (the next forward allocates)."""
        self.buffers, self.values, self.batch, self._sums = {}, {}, 0, {}

    def activation_bytes(self, batch: int) -> int:
        """Bytes of the node output buffers for ``batch`` (one per node, none for a fused relu;
        not the input, not op workspaces or the values kept for backward)."""
        return sum(batch * int(np.prod(self.shapes[s.node])) for s in self.steps if s.fused_into is None) * self.dtype.itemsize

    def workspace_bytes(self) -> int:
        """Bytes of op scratch held now (each conv's column buffer and repacked weights)."""
        return sum(s.op.workspace.nbytes for s in self.steps if hasattr(s.op, "workspace"))

    def forward(self, x: np.ndarray, ctx: Context, timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Run every node on ``x`` (N x input shape, channels-last, the plan's dtype). Returns the
        values of all nodes (the plan's own buffers: copy what must outlive the next call)."""
        self._allocate(x.shape[0])
        values = {self.input: x}
        clock = time.perf_counter
        for step in self.steps:
            if step.fused_into is not None:
                values[step.node] = values[step.fused_into]  # (its producer ran before it)
                continue
            if step.pooled_by is not None:
                values[step.node] = self.buffers[step.node]  # (the pooling, after it, fills it)
                continue
            out = self.buffers[step.node]
            start = clock()
            try:
                step.op.forward([values[i] for i in step.inputs], out, ctx)
            except OutOfDeviceMemory as error:
                raise error.at(step.node) from None
            if timings is not None:
                self.backend.synchronize()  # a device runs asynchronously: time the work, not the launch
                timings[step.node] = timings.get(step.node, 0.0) + clock() - start
            values[step.node] = out
        self.values = values
        return values

    def backward(
        self, output_grads: dict[str, np.ndarray], timings: dict[str, float] | None = None,
        on_grads: Callable[[str], None] | None = None,
    ) -> np.ndarray | None:
        """Reverse-mode from dL/d(output) for the given outputs; fills every op's ``grads`` and
        returns dL/d(input) when the plan was built with ``input_grad``. ``on_grads(node)`` is
        called as soon as a node's parameter gradients are final (data-parallel training starts
        sending them while the rest of backward runs)."""
        grads: dict[str, np.ndarray] = {}
        owned: set[str] = set()

        backend = self.backend

        def accumulate(node: str, g: np.ndarray) -> None:
            if node not in grads:
                grads[node] = g
                return
            if node not in owned:
                # The first two gradients sum into the plan's own buffer in one pass (a copy and
                # an add would be two), allocated once per batch size.
                total = self._sums.get(node)
                if total is None or total.shape != g.shape or total.dtype != g.dtype:
                    total = self._sums[node] = backend.empty(g.shape, g.dtype)
                backend.add(total, grads[node], g)
                grads[node] = total
                owned.add(node)
                return
            backend.add_into(grads[node], g)

        for node, g in output_grads.items():
            accumulate(node, g)
        clock = time.perf_counter
        for step in reversed(self.steps):
            if step.fused_into is not None:
                g = grads.pop(step.node, None)
                if g is not None:
                    accumulate(step.fused_into, g)  # its producer's backward takes the relu's gradient
                if on_grads is not None:
                    on_grads(step.node)  # (no parameters)
                continue
            if step.pooled_by is not None:
                # the pooling's backward gave the gradient of this activation's input (no one else reads it)
                if on_grads is not None:
                    on_grads(step.node)
                continue
            g = grads.pop(step.node, None)
            if g is None:
                # Nothing downstream asked for a gradient: this node's parameters get zero.
                for array in step.op.grads.values():
                    backend.fill(array, 0)
                if on_grads is not None:
                    on_grads(step.node)
                continue
            start = clock()
            try:
                input_grads = step.op.backward(g)
            except OutOfDeviceMemory as error:
                raise error.at(step.node) from None
            if timings is not None:
                backend.synchronize()
                timings[step.node] = timings.get(step.node, 0.0) + clock() - start
            if on_grads is not None:
                on_grads(step.node)
            for index in step.op.grad_order or range(len(input_grads)):
                if input_grads[index] is not None:
                    accumulate(step.inputs[index], input_grads[index])
        return grads.get(self.input)
