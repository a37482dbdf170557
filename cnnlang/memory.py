"""Memory a run will need, estimated from the compiled model before anything is allocated, so a
model too large for this machine is refused with its size instead of failing half-way."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UsageError
from .report import human


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int  # bytes: parameters, their gradients, buffers
    activations: int  # bytes: the input and one output buffer per layer, for the batch
    batch: int
    dtype: str

    @property
    def total(self) -> int:
        return self.weights + self.activations


def estimate(model, batch: int, dtype: str) -> MemoryEstimate:
    """An upper bound of what building ``model`` and running a batch through it allocates
    (the memory-planning pass often needs less activation storage)."""
    itemsize = {"float32": 4, "float64": 8}[dtype]
    totals = model.totals
    weights = (2 * totals["params"] + totals["buffers"]) * itemsize
    activations = batch * totals["activations"] * itemsize  # the input node's values included
    return MemoryEstimate(weights, activations, batch, dtype)


def available_bytes() -> int | None:
    """Memory the system can give this process now (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def check_fits(model, batch: int, dtype: str, available: int | None = None) -> MemoryEstimate:
    """Raise :class:`UsageError` naming the sizes and what to change when the run would need more
    memory than is available."""
    need = estimate(model, batch, dtype)
    available = available_bytes() if available is None else available
    if available is not None and need.total > available:
        smaller = " or --dtype float32" if dtype == "float64" else ""
        if need.weights > available:
            change = f"The parameters alone do not fit{smaller.replace(' or', ';')}: use a smaller model (fewer filters, smaller fc layers)"
        else:
            change = f"Lower --batch, give a smaller input size (--input CxHxW){smaller}, or use a smaller model"
        raise UsageError(
            f"running '{model.name}' needs about {human(need.total, 'B')}: {human(need.weights, 'B')} for parameters, "
            f"gradients and buffers, {human(need.activations, 'B')} for the activations of a batch of {batch} "
            f"({'x'.join(map(str, model.input_shape))} input, {dtype}); only {human(available, 'B')} of memory is "
            f"available. {change}"
        )
    return need
