"""Central finite differences for the float64 gradient checks (shared by the runtime tests)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def central_difference(loss: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d loss / d array, one element at a time; ``array`` is perturbed in place and restored."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        keep = array[index]
        array[index] = keep + eps
        up = loss()
        array[index] = keep - eps
        down = loss()
        array[index] = keep
        grad[index] = (up - down) / (2 * eps)
    return grad


def stacked_central_difference(losses: Callable[[np.ndarray], np.ndarray], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """The same, with all 2 * x.size perturbed copies in one call (for kernels whose rows are
    independent): ``losses`` maps B x *x.shape to the B losses."""
    steps = np.eye(x.size).reshape(x.size, *x.shape) * eps
    values = losses(np.concatenate([x + steps, x - steps]))
    return ((values[: x.size] - values[x.size :]) / (2 * eps)).reshape(x.shape)
