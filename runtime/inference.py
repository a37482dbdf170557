"""The inference plan: runs a graph rewritten by ``cnnlang.passes.optimise`` (eval mode only).

It reads the node attributes the passes leave (see docs/runtime.md, "Optimised inference"):

- ``activation`` on conv, conv1d, fc and add: applied in the op's epilogue, in the same pass;
- ``residual`` on conv: the second input is added in the conv's epilogue (before the activation);
- ``folded`` (+ ``folded_layers``, ``original_bias``) on conv/fc: the weight and bias are derived
  from the original network's parameters by :func:`runtime.fold.fold_batchnorm`; every other
  node shares the original op's arrays;
- ``write_into: (concat, offset)``: the node's output is the concat buffer's channel slice, and
  the concat (``eliminated``) copies only the inputs that were not written in place;
- ``in_place``: an element-wise node writes over its input's buffer, a residual conv over its
  shortcut's (where its op ``writes_over_residual``; else into a buffer of its own);
- ``streamed_into`` (a depthwise conv): where the reading 1x1 conv's op ``streams`` it (the CPU
  ops), that conv reads the depthwise conv's input and computes both
  (runtime/kernels/cpu/depthwise_pointwise.py); the depthwise step then runs nothing, has no
  storage and no entry in ``timings`` (its time is the 1x1 conv's). Elsewhere both run as
  written, the depthwise conv into a buffer of its own (plan-memory gave it no slot);
- ``algorithm`` (conv): ``"winograd"`` runs the layer as Winograd F(2x2, 3x3)
  (runtime/kernels/cpu/winograd.py); its transformed weight is derived in :meth:`refresh`, after
  folding, like the folded parameters;
- graph ``memory``: storage-owning nodes get views of shared slots (one flat array per slot).

The conv layers also share one scratch workspace (their column buffers, and Winograd's
transformed input and GEMM output; one per workspace type, i.e. per backend's conv op), since they
run one after another: ResNet-50 at batch 8 holds 24 MB of it instead of 237 MB (without Winograd).

On any backend: arrays are touched only through the backend's methods, and folding reads the
host copies of the original parameters (the ``host`` dict: the network keeps them current).

Values of nodes whose storage was reused are overwritten later in the pass: only the outputs
hold their values after ``forward``.

Running: once the storage of a batch size is allocated and the parameters derived, every step is
bound (``Op.bind``) to its input and output arrays, and ``forward`` just calls the bound steps in
order: no per-call lists, dicts or timing branches, and ops fix their views, plans and scratch
once and run small work on single-thread kernels. The network input is copied into a buffer of
the plan's (:meth:`InferencePlan.input_buffer`; the network writes its layout conversion straight
into it), so that every step's arrays are fixed. At batch 1 the overhead was most of the time:
LeNet-5 (2 threads, float32, AVX2) took 0.62 ms per image with the per-call loop and the parallel
kernels (of which ~0.3 ms waking Numba's second thread for microseconds of work), 0.14 ms bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import networkx as nx
import numpy as np

from cnnlang import ir

from .backend import CPU, Backend, OutOfDeviceMemory
from .fold import BatchNormStatistics, fold_batchnorm
from .kernels.cpu.workspace import held_bytes, holding
from .ops import Context, Op, internal_shape, make_op
from .ops.base import channel_slice

@dataclass
class InferenceStep:
    node: str
    op: Op
    inputs: list[str]
    out: np.ndarray | None = None  # the node's storage (maybe a strided channel slice)
    scratch: np.ndarray | None = None  # where an op without strided_out writes before the copy
    streamed: bool = False  # computed by the step it is streamed into (``streamed_into``)


class InferencePlan:
    """Built from the optimised graph and the original plan's ops (whose parameter arrays the
    unchanged nodes share). Folded parameters are derived from ``host``: the original parameters
    and buffers by name (``<node>.<name>``), as host (NumPy) arrays; default: the source ops' own
    arrays, which are host arrays on the CPU. Call :meth:`refresh` after the original parameters
    change."""

    def __init__(
        self, graph: nx.DiGraph, dtype: np.dtype, source_ops: dict[str, Op], backend: Backend = CPU,
        host: dict[str, np.ndarray] | None = None,
    ):
        self.graph = graph
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.input = graph.graph["input"]
        self.outputs: list[str] = list(graph.graph["outputs"])
        self.aliases: dict[str, str] = dict(graph.graph.get("aliases", {}))
        self.memory: dict | None = graph.graph.get("memory")
        self.shapes = {n: internal_shape(graph.nodes[n]["shape"]) for n in graph.nodes}
        self._source_ops = source_ops
        if host is None:
            host = {f"{node}.{name}": array for node, op in source_ops.items() for name, array in {**op.params, **op.buffers}.items()}
        self._host = host
        self.workspaces: dict[type, object] = {}  # one shared conv workspace per workspace type
        self.steps = [self._bind(node) for node in ir.layer_nodes(graph)]
        self._ops = {step.node: step.op for step in self.steps}
        self._stream_depthwise()
        self.batch = 0
        self.values: dict[str, np.ndarray] = {}
        self._slots: list[np.ndarray] = []
        self._private: dict[str, np.ndarray] = {}
        self._input: np.ndarray | None = None  # the batch's copy of the network input
        self._runs: list[Callable[[], None]] | None = None  # the bound steps (see the module docstring)
        self._bound_context: Context | None = None
        self.refresh()

    def workspace_bytes(self) -> int:
        """Bytes of conv scratch (column buffers, Winograd's buffers) held now, plus the weights
        convs prepare once per refresh (column-order, Winograd-transformed and register-tile-packed
        copies: derived arrays the original network does not have) and those the bound steps
        packed for themselves (convs' and fc layers' GEMM panels, the stem's weight)."""
        prepared = sum(s.op.prepared_bytes() for s in self.steps if hasattr(s.op, "prepared_bytes"))
        bound = sum(held_bytes(run) for run in self._runs or ())
        return sum(w.nbytes for w in self.workspaces.values()) + prepared + bound

    def _bind(self, node: str) -> InferenceStep:
        data = self.graph.nodes[node]
        if node not in self._source_ops:
            raise ValueError(f"optimised graph has node '{node}', which the original network lacks")
        op = make_op(self.graph, node, self.shapes, self.dtype, self.backend)
        cls = type(op)
        source = self._source_ops[node]
        op.params, op.buffers = dict(source.params), dict(source.buffers)
        if hasattr(op, "workspace"):
            op.workspace = self.workspaces.setdefault(type(op.workspace), op.workspace)
        if data.get("algorithm") is not None:
            if not hasattr(op, "prepare_weights"):
                raise ValueError(f"{node}: {data['op']} has no algorithm {data['algorithm']!r}")
            op.algorithm = data["algorithm"]
        if data.get("residual"):
            op.residual = True
        if data.get("activation") is not None:
            if not cls.fuses_activation:
                raise ValueError(f"{node}: {data['op']} cannot fuse an activation")
            op.activation = data["activation"]
        if data.get("eliminated"):
            op.written = frozenset(
                index for index, (producer, offset) in enumerate(zip(data["inputs"], op.offsets))
                if tuple(self.graph.nodes[producer].get("write_into") or ()) == (node, offset)
            )  # fmt: skip
        return InferenceStep(node, op, list(data["inputs"]))

    def _stream_depthwise(self) -> None:
        """Each ``streamed_into`` pair whose reader's op streams the depthwise op: the reader reads
        the depthwise conv's input, and the depthwise step is marked ``streamed``."""
        steps = {step.node: step for step in self.steps}
        for step in self.steps:
            reader = self.graph.nodes[step.node].get("streamed_into")
            if reader is None:
                continue
            target = steps[reader]
            if hasattr(target.op, "streams") and target.op.streams(step.op):
                target.op.depthwise = step.op
                target.inputs = list(step.inputs)
                step.streamed = True

    # -- parameters
    def refresh(self) -> None:
        """Recompute the folded weights and biases from the original parameters, then the weights
        convs derive from them (Winograd's U = G g G^T, or im2col's column order)."""
        self._runs = None  # the steps bind the new arrays
        for step in self.steps:
            data = self.graph.nodes[step.node]
            if data.get("folded"):
                self._fold(step, data)
            if hasattr(step.op, "prepare_weights"):
                step.op.prepare_weights()

    def _fold(self, step: InferenceStep, data: dict) -> None:
        """The conv / fc weight and bias with the batchnorms after it folded in."""
        host, node = self._host, step.node
        statistics = []
        for bn, layer in zip(data["folded"], data["folded_layers"]):
            affine = bool(layer.affine)
            statistics.append(BatchNormStatistics(
                host[f"{bn}.running_mean"], host[f"{bn}.running_var"], float(layer.eps),
                host[f"{bn}.gamma"] if affine else None, host[f"{bn}.beta"] if affine else None,
            ))  # fmt: skip
        has_bias = f"{node}.bias" in host
        bias = host.get(f"{node}.bias") if data.get("original_bias", has_bias) else None
        weight, bias = fold_batchnorm(host[f"{node}.weight"], bias, statistics, self.dtype)
        step.op.params = {"weight": self.backend.to_device(weight), "bias": self.backend.to_device(bias)}

    # -- storage
    def _allocate(self, batch: int) -> None:
        if batch == self.batch:
            return
        self.release()
        self._input = self.backend.empty((batch, *self.shapes[self.input]), self.dtype)
        self._slots = [self.backend.empty(size * batch, self.dtype) for size in (self.memory or {}).get("slots", [])]
        storage: dict[str, np.ndarray] = {}
        for step in self.steps:
            if step.streamed:
                continue
            try:
                step.out = self._storage(step.node, batch, storage)
                if not self.backend.is_contiguous(step.out) and not step.op.strided_out:
                    step.scratch = self.backend.empty(step.out.shape, self.dtype)
            except OutOfDeviceMemory as error:
                raise error.at(step.node) from None
        self.batch = batch

    def release(self) -> None:
        """Drop the batch's storage (the next forward allocates it again)."""
        self._slots, self._private, self.values, self.batch = [], {}, {}, 0
        self._input, self._runs = None, None
        for step in self.steps:
            step.out = step.scratch = None

    def _storage(self, node: str, batch: int, storage: dict[str, np.ndarray]) -> np.ndarray:
        if node in storage:
            return storage[node]
        data = self.graph.nodes[node]
        shape = (batch, *self.shapes[node])
        if data.get("write_into"):
            concat, offset = data["write_into"]
            base = self._storage(concat, batch, storage)
            view = channel_slice(base, offset, offset + shape[-1])
        elif (source := self._overwrites(node)) not in (None, self.input):
            # (Never over the network input: that is the caller's array.)
            view = self._storage(source, batch, storage)
        else:
            view = self._owned(node, shape)
        if view.shape != shape:
            raise ValueError(f"{node}: its storage is {view.shape}, the node needs {shape}")
        storage[node] = view
        return view

    def _overwrites(self, node: str) -> str | None:
        """The input whose buffer ``node`` writes over (``in_place``), where its op can."""
        if self.graph.nodes[node].get("residual") and not self._ops[node].writes_over_residual:
            return None
        return ir.overwritten_input(self.graph, node)

    def _owned(self, node: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        assign = (self.memory or {}).get("assign", {})
        if node in assign:
            slot = self._slots[assign[node]]
            if slot.size < size:
                raise ValueError(f"{node}: memory slot {assign[node]} holds {slot.size} values, the node needs {size}")
            return slot[:size].reshape(shape)
        self._private[node] = self.backend.empty(shape, self.dtype)
        return self._private[node]

    def activation_bytes(self, batch: int) -> int:
        """Bytes of activation storage allocated for ``batch``: the memory slots, private buffers
        and scratch for ops that cannot write strided output (not the input, not op workspaces)."""
        self._allocate(batch)
        arrays = [*self._slots, *self._private.values(), *(s.scratch for s in self.steps if s.scratch is not None)]
        return sum(a.nbytes for a in arrays)

    # -- running
    def input_buffer(self, batch: int) -> np.ndarray:
        """The plan's buffer for a ``batch`` x input-shape (channels-last) input: a caller that
        writes the input there saves :meth:`forward` a copy."""
        self._allocate(batch)
        return self._input

    def forward(self, x: np.ndarray, ctx: Context, timings: dict[str, float] | None = None) -> dict[str, np.ndarray]:
        """Run on ``x`` (N x input shape, channels-last, the plan's dtype) in eval mode; returns
        the node values (views of the plan's storage, valid for the outputs only)."""
        self._allocate(x.shape[0])
        ctx.train = False
        if x is not self._input:
            self.backend.copy(self._input, x)
        if self._runs is None or ctx is not self._bound_context:
            self._bind_steps(ctx)
        index = 0
        try:
            if timings is None:
                for run in self._runs:
                    run()
                    index += 1
            else:
                clock = time.perf_counter
                for step, run in zip(self.steps, self._runs):
                    if step.streamed:  # (its time is in the step it is streamed into)
                        index += 1
                        continue
                    start = clock()
                    run()
                    self.backend.synchronize()  # a device runs asynchronously: time the work, not the launch
                    timings[step.node] = timings.get(step.node, 0.0) + clock() - start
                    index += 1
        except OutOfDeviceMemory as error:
            raise error.at(self.steps[index].node) from None
        return self.values

    def _bind_steps(self, ctx: Context) -> None:
        """Bind every step to its arrays: the input buffer's, the storage's (``values``)."""
        values = {self.input: self._input}
        runs = []
        for step in self.steps:
            if step.streamed:
                runs.append(_nothing)
                continue
            try:
                target = step.out if step.scratch is None else step.scratch
                run = step.op.bind([values[i] for i in step.inputs], target, ctx)
            except OutOfDeviceMemory as error:
                raise error.at(step.node) from None
            if step.scratch is not None:
                run = _then_copy(run, self.backend.copy, step.out, step.scratch)
            runs.append(run)
            values[step.node] = step.out
        self.values, self._runs, self._bound_context = values, runs, ctx

    def resolve(self, name: str) -> str:
        """The surviving node that computes original node ``name``'s tensor."""
        return self.aliases.get(name, name)


def _then_copy(run: Callable[[], None], copy, dst, src) -> Callable[[], None]:
    """``run``, then the step's scratch output copied into its (strided) storage."""

    def run_and_copy() -> None:
        run()
        copy(dst, src)

    return holding(run_and_copy, *getattr(run, "held", ()))


def _nothing() -> None:
    """A streamed step's run: the step it is streamed into computes it."""
