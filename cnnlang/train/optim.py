"""Optimisers: SGD (with momentum and Nesterov), Adam and AdamW, with PyTorch's exact formulas.

An optimiser holds the network's ``params`` and ``grads`` dicts and updates the arrays named in
``names`` in place: the runtime's ops keep references to the parameter arrays, so a parameter is
never rebound. Slot arrays (momentum, Adam's moments) are allocated once, with the parameter's
shape and dtype; a step works through two scratch buffers, so it allocates nothing per parameter.
Slots and scratch are allocated through the parameters' backend (runtime/backend.py). On the CPU
the updates are NumPy expressions; on a GPU each parameter's update is one fused kernel
(runtime/kernels/cuda/optim.py, the same formulas in the same order), which needs no scratch.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable

import numpy as np

from cnnlang.runtime.backend import Backend, get_backend

Arrays = dict[str, np.ndarray]


class Optimizer:
    """The shared machinery: checking, slots, scratch space, weight-decay selection, state."""

    kind = ""
    slot_names: tuple[str, ...] = ()
    hyper_names: tuple[str, ...] = ()

    def __init__(self, params: Arrays, grads: Arrays, names: Iterable[str], lr: float,
                 weight_decay: float, no_decay: Collection[str], backend: Backend | None = None) -> None:
        self.backend = get_backend(backend)
        self.xp = self.backend.xp
        self.params = params
        self.grads = grads
        self.names = _checked_names(params, grads, names)
        self.lr = _non_negative("lr", lr)
        self.weight_decay = _non_negative("weight_decay", weight_decay)
        self.no_decay = frozenset(no_decay)
        self.steps = 0
        self.slots: dict[str, Arrays] = {
            slot: {name: self.backend.zeros(params[name].shape, params[name].dtype) for name in self.names} for slot in self._active_slots()
        }
        self._kernels = _device_kernels(self.backend)
        self._flat: dict[str, tuple] | None = None
        # Two flat scratch buffers per dtype, as long as the largest parameter; each step views them.
        largest: dict[np.dtype, int] = {}
        for name in self.names:
            p = params[name]
            largest[p.dtype] = max(largest.get(p.dtype, 0), p.size)
        empty = self.backend.empty
        self._scratch = {} if self._kernels else {dtype: (empty(size, dtype), empty(size, dtype)) for dtype, size in largest.items()}

    def _active_slots(self) -> tuple[str, ...]:
        return self.slot_names

    def step(self) -> None:
        """Update every parameter in ``names`` from its current gradient."""
        self.steps += 1
        if self._kernels:
            for name, (p, g, slots) in self._flat_views().items():
                self._update_on_device(name, p, g, slots)
            return
        for name in self.names:
            p = self.params[name]
            a, b = (buffer[: p.size].reshape(p.shape) for buffer in self._scratch[p.dtype])
            self._update(name, p, self.grads[name], a, b)

    def _flat_views(self) -> dict[str, tuple]:
        """(parameter, gradient, {slot: array}) as flat views, by name, made once: a kernel
        walks one index, and a view costs a Python object per array per step otherwise."""
        if self._flat is None:
            def flat(array):
                return array.reshape(array.size)

            self._flat = {name: (flat(self.params[name]), flat(self.grads[name]),
                                 {slot: flat(arrays[name]) for slot, arrays in self.slots.items()}) for name in self.names}
        return self._flat

    def _update(self, name: str, p: np.ndarray, g: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        raise NotImplementedError

    def _update_on_device(self, name: str, p, g, slots: dict) -> None:
        """The same update as :meth:`_update`, by the backend's kernels, on flat arrays."""
        raise NotImplementedError

    def _decays(self, name: str) -> bool:
        return self.weight_decay != 0.0 and name not in self.no_decay

    def _with_l2(self, name: str, p: np.ndarray, g: np.ndarray, out: np.ndarray) -> np.ndarray:
        """g + weight_decay * p (written to ``out``) when ``name`` decays, else g itself."""
        if not self._decays(name):
            return g
        self.xp.multiply(p, self.weight_decay, out=out)
        out += g
        return out

    # -- state ------------------------------------------------------------------------------

    def state_arrays(self) -> Arrays:
        """Host copies of the slot arrays, keyed ``"<slot>/<parameter name>"``."""
        return {f"{slot}/{name}": self._host_copy(array) for slot, arrays in self.slots.items() for name, array in arrays.items()}

    def _host_copy(self, array) -> np.ndarray:
        host = self.backend.to_host(array)
        return host.copy() if self.backend.shares_host_memory else host

    def state_scalars(self) -> dict:
        """The kind, step count, lr and hyper-parameters, as plain JSON data."""
        scalars = {"kind": self.kind, "steps": self.steps, "lr": self.lr}
        for key in self.hyper_names:
            value = getattr(self, key)
            scalars[key] = list(value) if isinstance(value, tuple) else value
        return scalars

    def load_state(self, arrays: Arrays, scalars: dict) -> None:
        """Restore what state_arrays and state_scalars gave, exactly (the hyper-parameters too).
        Raises ValueError for another kind, a missing, unexpected or misshapen slot."""
        if scalars.get("kind") != self.kind:
            raise ValueError(f"optimiser state is for {scalars.get('kind')!r}, but this optimiser is {self.kind!r}")
        missing = [key for key in ("steps", "lr", *self.hyper_names) if key not in scalars]
        if missing:
            raise ValueError(f"{self.kind} optimiser state lacks {', '.join(missing)}")
        expected = {f"{slot}/{name}": array for slot, arrays_ in self.slots.items() for name, array in arrays_.items()}
        problems = [f"missing slot {key}" for key in expected if key not in arrays]
        problems += [f"unexpected slot {key}" for key in arrays if key not in expected]
        problems += [
            f"slot {key} has shape {tuple(np.shape(arrays[key]))}, expected {array.shape}"
            for key, array in expected.items() if key in arrays and np.shape(arrays[key]) != array.shape
        ]
        if problems:
            raise ValueError(f"{self.kind} optimiser state does not fit: " + "; ".join(problems))
        for key, array in expected.items():
            self.backend.upload(np.asarray(arrays[key], dtype=array.dtype), array)
        self.steps = int(scalars["steps"])
        self.lr = float(scalars["lr"])
        for key in self.hyper_names:
            current = getattr(self, key)
            value = scalars[key]
            setattr(self, key, tuple(value) if isinstance(current, tuple) else type(current)(value))


class SGD(Optimizer):
    """torch.optim.SGD with dampening 0: g = grad + wd*p; buf = momentum*buf + g (buf = g on the
    first step, which a zero-initialised buffer gives exactly); g = g + momentum*buf with Nesterov,
    else buf; p -= lr*g."""

    kind = "sgd"
    slot_names = ("momentum",)
    hyper_names = ("momentum", "nesterov", "weight_decay")

    def __init__(self, params: Arrays, grads: Arrays, names: Iterable[str], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, no_decay: Collection[str] = (),
                 backend: Backend | None = None) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        super().__init__(params, grads, names, lr, weight_decay, no_decay, backend)

    def _active_slots(self) -> tuple[str, ...]:
        return self.slot_names if self.momentum else ()

    def _update(self, name, p, g, a, b):
        d = self._with_l2(name, p, g, out=a)
        if self.momentum:
            buf = self.slots["momentum"][name]
            buf *= self.momentum
            buf += d
            if self.nesterov:
                self.xp.multiply(buf, self.momentum, out=b)
                b += d
                d = b
            else:
                d = buf
        self.xp.multiply(d, self.lr, out=a)
        p -= a

    def _update_on_device(self, name, p, g, slots):
        momentum = slots.get("momentum", p)  # p stands in when there is no slot: it is not read
        weight_decay = self.weight_decay if self._decays(name) else 0.0
        self._kernels.sgd_step(p, g, momentum, self.lr, self.momentum, weight_decay, self.nesterov)


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad off): g = grad + wd*p; m = b1*m + (1-b1)*g;
    v = b2*v + (1-b2)*g*g; p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)."""

    kind = "adam"
    slot_names = ("exp_avg", "exp_avg_sq")
    hyper_names = ("betas", "eps", "weight_decay")
    decoupled = False

    def __init__(self, params: Arrays, grads: Arrays, names: Iterable[str], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 no_decay: Collection[str] = (), backend: Backend | None = None) -> None:
        betas = tuple(float(beta) for beta in betas)
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        self.betas = betas
        self.eps = _non_negative("eps", eps)
        super().__init__(params, grads, names, lr, weight_decay, no_decay, backend)

    def _update(self, name, p, g, a, b):
        beta1, beta2 = self.betas
        if self.decoupled:
            if self._decays(name):
                p *= 1.0 - self.lr * self.weight_decay
        else:
            g = self._with_l2(name, p, g, out=a)
        m = self.slots["exp_avg"][name]
        v = self.slots["exp_avg_sq"][name]
        m *= beta1
        self.xp.multiply(g, 1.0 - beta1, out=b)
        m += b
        v *= beta2
        self.xp.multiply(g, g, out=b)
        b *= 1.0 - beta2
        v += b
        # g is dead from here on, so ``a`` (which may hold it) becomes the denominator.
        step_size = self.lr / (1.0 - beta1 ** self.steps)
        self.xp.sqrt(v, out=a)
        a /= math.sqrt(1.0 - beta2 ** self.steps)
        a += self.eps
        self.xp.divide(m, a, out=a)
        a *= step_size
        p -= a

    def _update_on_device(self, name, p, g, slots):
        weight_decay = self.weight_decay if self._decays(name) else 0.0
        self._kernels.adam_step(p, g, slots["exp_avg"], slots["exp_avg_sq"], self.steps, self.lr, self.betas, self.eps,
                                weight_decay, self.decoupled)


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay, p *= 1 - lr*wd, then Adam without the L2 term."""

    kind = "adamw"
    decoupled = True

    def __init__(self, params: Arrays, grads: Arrays, names: Iterable[str], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 no_decay: Collection[str] = (), backend: Backend | None = None) -> None:
        super().__init__(params, grads, names, lr, betas, eps, weight_decay, no_decay, backend)


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(kind: str, params: Arrays, grads: Arrays, names: Iterable[str], lr: float, momentum: float,
                   weight_decay: float | None, nesterov: bool, no_decay: Collection[str],
                   betas: tuple[float, float] = (0.9, 0.999), backend: Backend | None = None) -> Optimizer:
    """The optimiser called ``kind`` ("sgd", "adam" or "adamw"). ``momentum`` applies to SGD only
    (Adam's momentum is ``betas``); ``weight_decay=None`` takes the kind's default (0.01 for
    AdamW, else 0)."""
    if kind not in OPTIMIZERS:
        raise ValueError(f"unknown optimiser {kind!r}; the optimisers are: {', '.join(OPTIMIZERS)}")
    if kind == "sgd":
        return SGD(params, grads, names, lr, momentum=momentum, nesterov=nesterov,
                   weight_decay=weight_decay or 0.0, no_decay=no_decay, backend=backend)
    if nesterov:
        raise ValueError(f"Nesterov momentum applies to sgd only, not {kind}")
    decay = {} if weight_decay is None else {"weight_decay": weight_decay}
    return OPTIMIZERS[kind](params, grads, names, lr, betas=betas, no_decay=no_decay, backend=backend, **decay)


def _device_kernels(backend: Backend):
    """The update kernels of a backend that has its own (None: NumPy expressions)."""
    if backend.name == "cuda":
        from cnnlang.runtime.kernels.cuda import optim

        return optim
    return None


def _checked_names(params: Arrays, grads: Arrays, names: Iterable[str]) -> list[str]:
    names = list(names)
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise ValueError(f"parameter names given twice: {', '.join(duplicated)}")
    for name in names:
        if name not in params:
            raise ValueError(f"no parameter named {name!r} to optimise")
        if name not in grads:
            raise ValueError(f"no gradient for parameter {name!r}")
        p, g = params[name], grads[name]
        if not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"parameter {name!r} is {p.dtype}; an optimiser updates floating-point arrays")
        if g.shape != p.shape:
            raise ValueError(f"gradient of {name!r} has shape {g.shape}, the parameter {p.shape}")
    return names


def _non_negative(what: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:  # also rejects NaN
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value
