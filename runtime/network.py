"""A built network: parameters, gradients and buffers by name, forward and backward.

Names are ``<layer>.<param>``, e.g. ``conv1.weight`` or ``basic1/batchnorm1.running_var``.
Arrays use the user's layout (channels first: N x C x H x W in, PyTorch's weight layouts).

Built with optimisation passes, a network also holds an inference plan for the optimised graph
(runtime/inference.py): eval-mode forward runs it, training mode always runs the original plan
(``plan``; on the CPU with the relus after batchnorms and residual adds fused, runtime/plan.py),
whose parameters stay the only ones there are; folded weights are derived from them.

(~370 lines: the public API of a built network, parameters, modes, forward/backward, weights and
the backend copies, which users read in one place.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np

from cnnlang.environment import warn_if_untuned
from cnnlang.errors import UsageError
from cnnlang.layers import format_shape

from .backend import Backend, OutOfDeviceMemory, get_backend
from .inference import InferencePlan
from .init import initialise
from .kernels.cpu import pool_gemm
from .ops import Context, internal_shape, to_internal, to_user
from .plan import Plan
from .weights import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_OPTIMIZER_PREFIX,
    WEIGHTS_FORMAT,
    WeightsError,
    load_weights,
    save_weights,
)

DTYPES = {"float32": np.float32, "float64": np.float64}
#: Device memory per example while training, in units of the forward pass's node outputs: the
#: outputs, the gradients flowing back (about as large) and what ops keep for backward. Only
#: for the batch size an out-of-memory error suggests, which it calls an estimate.
TRAINING_MEMORY_FACTOR = 3
#: Of the free memory, what that suggestion lets the batch's tensors take (the rest: workspaces).
USABLE_FRACTION = 0.8


class InputError(UsageError, ValueError):
    """An input (or output gradient) whose shape or type does not fit the network."""


class Network:
    """Build with :meth:`cnnlang.Model.build`. ``training`` selects batch statistics and dropout.

    With ``optimised`` (``model.optimise(passes)``: the same model rewritten by optimisation
    passes), eval-mode forward runs its graph (``inference_plan``). Its
    derived parameters (folded batchnorm) are recomputed after ``load``, ``set_param``, a mode
    switch or any training-mode pass; code that edits ``params`` or ``buffers`` in place while
    in eval mode must call :meth:`refresh` before the next forward.

    On a backend with its own memory (``backend="cuda"``) the ops and optimisers work on device
    copies (:attr:`device_params`; :attr:`grads` are device arrays). Training changes the device
    copies only: :meth:`pull` copies them to :attr:`params` and :attr:`buffers`, and
    :meth:`state`, :meth:`save`, checkpoints, ``set_param`` and ``load`` do it first where
    training ran since the last pull. On the CPU both are the same arrays."""

    def __init__(
        self,
        model,
        *,
        seed: int = 0,
        dtype: str | np.dtype = "float32",
        input_grad: bool = False,
        optimised=None,
        backend: str | Backend | None = None,
    ):
        self.model = model
        self.backend = get_backend(backend)
        if self.backend.name == "cpu" and not pool_gemm.available():
            warn_if_untuned()  # (with pool_gemm, OpenBLAS's own threads stay idle)
        self.dtype = np.dtype(DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, not {self.dtype}")
        graph = model.graph
        self.plan = Plan(graph, self.dtype, input_grad=input_grad, backend=self.backend)
        # Host master copies (NumPy): what save, load and set_param see. The ops hold the
        # backend's arrays (the same arrays on the CPU); refresh uploads after host changes.
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}  # the backend's arrays
        self._device: dict[str, np.ndarray] = {}  # name -> the backend's copy of params/buffers
        self.trainable: list[str] = []
        by_node_params, by_node_buffers = {}, {}
        for step in self.plan.steps:
            data = graph.nodes[step.node]
            shapes = [graph.nodes[i]["shape"] for i in step.inputs]
            op = step.op
            for name, shape in data["layer"].param_shapes(shapes).items():
                key = f"{step.node}.{name}"
                self.params[key] = by_node_params.setdefault(step.node, {})[name] = np.zeros(shape, self.dtype)
                op.grads[name] = self.grads[key] = self.backend.zeros(shape, self.dtype)
                if data["layer"].trainable:
                    self.trainable.append(key)
            for name, shape in data["layer"].buffer_shapes(shapes).items():
                key = f"{step.node}.{name}"
                self.buffers[key] = by_node_buffers.setdefault(step.node, {})[name] = np.zeros(shape, self.dtype)
        initialise(graph, by_node_params, by_node_buffers, seed)
        for step in self.plan.steps:
            for name, host in by_node_params.get(step.node, {}).items():
                step.op.params[name] = self._device[f"{step.node}.{name}"] = self.backend.to_device(host)
            for name, host in by_node_buffers.get(step.node, {}).items():
                step.op.buffers[name] = self._device[f"{step.node}.{name}"] = self.backend.to_device(host)
        self.context = Context(train=False, rng=self.backend.rng([seed, 1]))
        self.training = False
        #: the passes eval-mode forward runs with (the optimised model's)
        self.passes = optimised.passes if optimised is not None else []
        self.inference_plan: InferencePlan | None = None
        if optimised is not None:
            self.inference_plan = InferencePlan(
                optimised.graph, self.dtype, {s.node: s.op for s in self.plan.steps}, self.backend,
                host={**self.params, **self.buffers},
            )
        self._source_hash: str | None = None
        self.load_notes: list[str] = []  # what the last load converted (float16 to float32, say)
        self._stale = False  # the inference plan's derived parameters need recomputing
        self._device_ahead = False  # training changed the device copies since the last pull
        self._last_plan: Plan | InferencePlan | None = None

    def refresh(self) -> None:
        """Upload :attr:`params` and :attr:`buffers` (the host copies) to the backend where it
        does not share host memory, and recompute the inference plan's derived parameters (folded
        batchnorm); needed only after editing them in place in eval mode. (The host copies win:
        on a device, :meth:`pull` first to keep what training changed.)"""
        if not self.backend.shares_host_memory:
            for name, host in {**self.params, **self.buffers}.items():
                self.backend.upload(host, self._device[name])
        self._device_ahead = False
        self._rederive()

    def _rederive(self) -> None:
        """The inference plan's folded parameters from the current values (pulled from the
        device where training changed them: folding runs on the host copies)."""
        self._pull_if_ahead()
        if self.inference_plan is not None:
            self.inference_plan.refresh()
        self._stale = False

    def pull(self) -> None:
        """Copy the device's parameters and buffers into :attr:`params` and :attr:`buffers` (the
        host copies). Nothing to do on the CPU, where they are the same arrays."""
        if not self.backend.shares_host_memory:
            for name, host in {**self.params, **self.buffers}.items():
                host[...] = self.backend.to_host(self._device[name])
        self._device_ahead = False

    def _pull_if_ahead(self) -> None:
        if self._device_ahead:
            self.pull()

    @property
    def device_params(self) -> dict[str, np.ndarray]:
        """The parameters the ops use, by name: device arrays on a device backend (what the
        optimisers step), the host arrays themselves on the CPU."""
        return {name: self._device[name] for name in self.params}

    @property
    def device_buffers(self) -> dict[str, np.ndarray]:
        """The buffers (batchnorm running statistics) the ops use, by name; see :attr:`device_params`."""
        return {name: self._device[name] for name in self.buffers}

    def activation_bytes(self, batch: int, optimised: bool | None = None) -> int:
        """Bytes of activation storage the forward pass allocates for ``batch``: the inference
        plan's (planned) storage when ``optimised`` (default: whether there is one), else one
        buffer per node of the original plan (a relu fused into its producer shares its buffer)."""
        if optimised is None:
            optimised = self.inference_plan is not None
        if optimised and self.inference_plan is None:
            raise ValueError("this network was built without passes")
        plan = self.inference_plan if optimised else self.plan
        return plan.activation_bytes(batch)

    # -- modes
    def train(self, mode: bool = True) -> "Network":
        if mode != self.training:
            self._stale = True
        self.training = mode
        return self

    def eval(self) -> "Network":
        return self.train(False)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.model.input_shape

    @property
    def output_names(self) -> list[str]:
        return list(self.plan.outputs)

    # -- running
    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as an N x input-shape array of the network's dtype; InputError if it cannot be."""
        expected = tuple(self.input_shape)
        if type(x) is np.ndarray and x.dtype == self.dtype and x.shape[1:] == expected and x.shape[0] > 0:
            return x  # the common case, without the checks' cost (~3 us a call)
        x = np.asarray(x)
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"expected numbers, got an array of {x.dtype}")
        if x.shape == expected:
            x = x[None]
        if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected or x.shape[0] == 0:
            raise InputError(
                f"expected input N x {format_shape(expected)} (or one {format_shape(expected)} example), "
                f"got {format_shape(x.shape)}"
            )
        return x.astype(self.dtype, copy=False)

    def _to_backend(self, array: np.ndarray) -> np.ndarray:
        """A user-layout host array as the plan takes it: channels last, on the backend."""
        return self.backend.to_device(to_internal(array))

    def forward(
        self, x: np.ndarray, timings: dict[str, float] | None = None, *, out: np.ndarray | None = None,
        on_backend: bool = False,
    ) -> np.ndarray:
        """The primary output for the batch ``x`` (N x C x H x W), as a new array the caller owns
        (the next forward does not change it); with ``out``, written into that array instead (no
        allocation) and returned. :meth:`outputs` has all of the outputs. With ``on_backend``
        the output stays where it was computed (a device array on a GPU, so the loss runs there):
        the plan's own array, channels-last, which the next forward overwrites."""
        x = self.check_input(x)
        try:
            return self._forward(x, timings, out, on_backend)
        except OutOfDeviceMemory as error:
            raise self._explain(error, x.shape[0]) from None

    def _forward(self, x: np.ndarray, timings: dict[str, float] | None, out: np.ndarray | None,
                 on_backend: bool) -> np.ndarray:
        if self.training or self.inference_plan is None:
            self.context.train = self.training
            self._stale = self._stale or self.training
            self._device_ahead = self._device_ahead or (self.training and not self.backend.shares_host_memory)
            self._last_plan = self.plan
            values = self.plan.forward(self._to_backend(x), self.context, timings)
            primary = values[self.plan.outputs[0]]
            return primary if on_backend else _to_caller(self.backend.to_host(primary), out)
        if self._stale:
            self._rederive()
        plan = self.inference_plan
        self._last_plan = plan
        # the input goes straight into the plan's input buffer: no second copy
        internal = plan.input_buffer(x.shape[0])
        if self.backend.shares_host_memory:
            np.copyto(internal, x.transpose(0, *range(2, x.ndim), 1) if x.ndim > 2 else x)  # (np.moveaxis: +5 us)
        else:
            self.backend.upload(to_internal(x), internal)
        values = plan.forward(internal, self.context, timings)
        primary = values[plan.resolve(self.plan.outputs[0])]
        return primary if on_backend else _to_caller(self.backend.to_host(primary), out)

    def outputs(self) -> dict[str, np.ndarray]:
        """Every declared output of the last forward pass, by name (the original graph's names,
        also after an optimised forward), as new arrays the caller owns."""
        if self._last_plan is self.inference_plan and self.inference_plan is not None:
            plan = self.inference_plan
            return {name: _to_caller(self.backend.to_host(plan.values[plan.resolve(name)])) for name in self.plan.outputs}
        return {name: _to_caller(self.backend.to_host(self.plan.values[name])) for name in self.plan.outputs}

    def backward(
        self, dy: np.ndarray | dict[str, np.ndarray], timings: dict[str, float] | None = None,
        on_grads: Callable[[str], None] | None = None,
    ) -> np.ndarray | None:
        """Back-propagate dL/d(output) (an array for the primary output, or a dict by output name)
        from the last forward pass; fills :attr:`grads`. Returns dL/d(input) when the network was
        built with ``input_grad=True``. ``on_grads(node)`` is called when a node's parameter
        gradients are final. A gradient may be the backend's own array (a device array, in the
        plan's channels-last layout, as ``forward(on_backend=True)`` gives the output)."""
        if self._last_plan is not None and self._last_plan is self.inference_plan:
            raise RuntimeError(
                "backward after an optimised (eval-mode) forward: call network.train() before forward, "
                "or build the network without passes"
            )
        if not self.plan.values:
            raise RuntimeError("backward needs a forward pass first")
        self._stale = True
        self._device_ahead = not self.backend.shares_host_memory  # an optimiser steps the device copies next
        given = dy if isinstance(dy, dict) else {self.plan.outputs[0]: dy}
        batch = self.plan.batch
        internal = {}
        for name, grad in given.items():
            if name not in self.plan.outputs:
                raise InputError(f"'{name}' is not an output; the outputs are {', '.join(self.plan.outputs)}")
            expected = (batch, *self.model.graph.nodes[name]["shape"])
            if not isinstance(grad, np.ndarray) and not self.backend.shares_host_memory:
                if (tuple(grad.shape), grad.dtype) != ((batch, *internal_shape(expected[1:])), self.dtype):
                    raise InputError(f"gradient for '{name}' must be {self.dtype} {format_shape(expected)}, "
                                     f"got {grad.dtype} {format_shape(grad.shape)}")
                internal[name] = grad
                continue
            grad = np.asarray(grad, dtype=self.dtype)
            if grad.shape != expected:
                raise InputError(f"gradient for '{name}' must be {format_shape(expected)}, got {format_shape(grad.shape)}")
            internal[name] = self._to_backend(grad)
        try:
            dx = self.plan.backward(internal, timings, on_grads)
        except OutOfDeviceMemory as error:
            raise self._explain(error, batch) from None
        return None if dx is None else to_user(self.backend.to_host(dx))

    def _explain(self, error: OutOfDeviceMemory, batch: int) -> OutOfDeviceMemory:
        """``error`` with the batch size that should fit: the batch's storage is freed, then the
        free memory is divided by an estimate of what one example needs."""
        for plan in (self.plan, self.inference_plan):
            if plan is not None:
                plan.release()
        info = self.backend.memory_info()
        if info is None:
            return error.explain(batch, None, None)
        per_example = self.plan.activation_bytes(1) * (TRAINING_MEMORY_FACTOR if self.training else 1)
        fits = min(batch - 1, int(info[0] * USABLE_FRACTION) // max(per_example, 1))
        return error.explain(batch, fits, info[0])

    # -- parameters
    def set_param(self, name: str, value: np.ndarray) -> None:
        """Copy ``value`` into parameter or buffer ``name`` (shapes must agree)."""
        target = self.params.get(name, self.buffers.get(name))
        if target is None:
            raise KeyError(f"no parameter or buffer named '{name}'")
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"{name} is {format_shape(target.shape)}, got {format_shape(value.shape)}")
        self._pull_if_ahead()
        target[...] = value
        self.backend.upload(target, self._device[name])
        self._stale = True

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers together, by name: the host copies themselves, pulled from
        the device first where training changed it."""
        self._pull_if_ahead()
        return {**self.params, **self.buffers}

    def source_hash(self) -> str:
        """SHA-256 of the compiled model's text (every layer with its arguments, shape and source
        line, imported blocks included): it changes when the network does, wherever the process
        runs. (Hashing the file named by ``model.source`` missed edited block files and depended
        on the working directory, since zoo sources are named relative to the repository.)"""
        if self._source_hash is None:
            self._source_hash = hashlib.sha256(self.model.dump().encode()).hexdigest()
        return self._source_hash

    def save(self, path: str | Path, overwrite: bool = False, metadata: dict[str, str] | None = None) -> None:
        """Parameters and buffers, with the model's name and source hash (plus ``metadata``)."""
        header = {"model": self.model.name, "source_sha256": self.source_hash(), "format": WEIGHTS_FORMAT}
        save_weights(path, self.state(), {**header, **(metadata or {})}, overwrite=overwrite)

    def load(self, path: str | Path) -> dict[str, str]:
        """Load parameters and buffers saved by :meth:`save`, a training checkpoint (its optimiser
        slots are skipped), or any file with the same names and shapes; returns the file's
        metadata. WeightsError names every missing, unexpected or misshapen entry."""
        arrays, metadata = load_weights(path)
        if metadata.get("format") == CHECKPOINT_FORMAT:
            arrays = {k: v for k, v in arrays.items() if not k.startswith(CHECKPOINT_OPTIMIZER_PREFIX)}
        self.load_arrays(arrays, str(path))
        return metadata

    def load_arrays(self, arrays: dict[str, np.ndarray], source: str) -> None:
        """Copy in every parameter and buffer; WeightsError (naming ``source``) lists every
        missing, unexpected or misshapen array, and then nothing is changed."""
        state = self.state()
        problems = []
        missing = sorted(set(state) - set(arrays))
        unexpected = sorted(set(arrays) - set(state))
        if missing:
            problems.append(f"missing {len(missing)}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        converted: dict[str, int] = {}
        for name in sorted(set(state) & set(arrays)):
            if arrays[name].shape != state[name].shape:
                problems.append(
                    f"{name} is {format_shape(arrays[name].shape)} in the file, {format_shape(state[name].shape)} in the model"
                )
            if arrays[name].dtype.kind != "f":
                # An integer or boolean "weight" is a damaged or foreign file, not a value to round.
                problems.append(f"{name} is {arrays[name].dtype} in the file; parameters and buffers must be floats")
            elif arrays[name].dtype != self.dtype:
                converted[str(arrays[name].dtype)] = converted.get(str(arrays[name].dtype), 0) + 1
        if problems:
            raise WeightsError(f"{source} does not fit model '{self.model.name}': " + "; ".join(problems))
        for name, value in arrays.items():
            state[name][...] = value
            self.backend.upload(state[name], self._device[name])
        self.load_notes = [f"{source}: {count} array(s) of {dtype} converted to {self.dtype}"
                           for dtype, count in sorted(converted.items())]
        self._stale = True


def _to_caller(value: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """A plan's (channels-last) value in the caller's layout, never sharing memory with the plan:
    the plan overwrites its buffers on the next forward, and a result that changed under the
    caller misled users. ``out`` (shape- and dtype-checked) avoids the allocation."""
    user = np.moveaxis(value, -1, 1) if value.ndim > 2 else value
    if out is None:
        return np.array(user, order="C")
    if out.shape != user.shape or out.dtype != user.dtype:
        raise InputError(
            f"out must be a {user.dtype} array of {format_shape(user.shape)}, "
            f"got {out.dtype} {format_shape(out.shape)}"
        )
    out[...] = user
    return out
