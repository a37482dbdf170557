"""Single-thread twins of parallel kernels, for work too small to share between threads.

Why: optimised inference at batch 1 (LeNet-5: about 0.4 M multiply-adds in all) runs each layer
in microseconds, while a ``parallel=True`` kernel costs about 2 us more per call than the same
loop compiled serially even on one thread, and waking Numba's second worker costs 20-50 us on a
loaded 2-core machine (LeNet-5 batch 1: 0.63 ms with 2 Numba threads, 0.30 ms with 1, same
process). Switching the pool to one thread for the call instead costs ~4.5 us per switch
(``numba.get_num_threads`` 1.8 us, ``set_num_threads`` 2.6 us), more than the work of most such
layers. The ops choose a twin by work size when the inference plan binds them
(``Op.bind``, runtime/inference.py).

A twin is the parallel kernel's own Python function compiled again without ``parallel`` (its
``prange`` loops then run as ``range``), so the two cannot drift apart and compute the same sums
in the same order: results are identical. Each twin gets its own qualified name, so Numba's
on-disk cache keeps it apart from the parallel version (the cache index is named after the
function, not its compile options).
"""

from __future__ import annotations

import functools
import types
from typing import Callable

import numpy as np
from numba import njit
from numba.core.dispatcher import Dispatcher

from .activation import RELU, SIGMOID, TANH
from .direct import direct_forward
from .epilogue import (
    _EMPTY, NONE, _activation_after, _bias_relu, _bias_relu_rows, _bias_smooth32, row_span, smooth32_arguments,
)
from .im2col import im2col
from .planar import planar_forward
from .pool import _avgpool_forward, _maxpool_values
from .workspace import SERIAL_BELOW

#: Elements (of input, output or im2col columns) below which a layer runs its serial twin:
#: conv's threshold (workspace.py), below which a second thread measured no gain.
SERIAL_WORK = SERIAL_BELOW


def serial_twin(kernel: Dispatcher) -> Dispatcher:
    """``kernel`` (a parallel Numba dispatcher: the jitted function itself, not a Python wrapper
    around one) compiled without ``parallel``, with its other options (error model, fastmath),
    cached on disk under ``<name>_serial``."""
    options = {k: v for k, v in kernel.targetoptions.items() if k in ("error_model", "fastmath", "boundscheck", "_nrt")}
    py = kernel.py_func
    twin = types.FunctionType(py.__code__, py.__globals__, f"{py.__name__}_serial", py.__defaults__, py.__closure__)
    twin.__qualname__ = f"{py.__qualname__}_serial"
    twin.__module__ = py.__module__
    twin.__doc__ = f"Serial twin of {py.__name__} (runtime/kernels/cpu/serial.py)."
    return njit(cache=True, **options)(twin)


im2col_serial = serial_twin(im2col)
direct_forward_serial = serial_twin(direct_forward)
planar_forward_serial = serial_twin(planar_forward)
avgpool_forward_serial = serial_twin(_avgpool_forward)  # (C-contiguous arrays)
maxpool_values_serial = serial_twin(_maxpool_values)  # (C-contiguous arrays)
_bias_relu_serial = serial_twin(_bias_relu)
_bias_relu_rows_serial = serial_twin(_bias_relu_rows)
_bias_smooth32_serial = serial_twin(_bias_smooth32)

def bind_bias_activation(y: np.ndarray, bias: np.ndarray | None, kind: int) -> Callable[[], None]:
    """epilogue.bias_activation(y, bias, kind) on one thread, as a call for this fixed ``y``
    (its layout decided once): the same loops, the same activation ufuncs."""
    if y.size and kind in (TANH, SIGMOID) and y.dtype == np.float32 and y.flags.c_contiguous:
        # as bias_activation: bias and activation in one flat pass
        return functools.partial(_bias_smooth32_serial, *smooth32_arguments(y, bias, kind))
    calls: list[Callable[[], None]] = []
    if y.size and (bias is not None or kind == RELU):
        vector = _EMPTY[y.dtype.char] if bias is None else bias
        if y.flags.c_contiguous:
            calls.append(functools.partial(_bias_relu_serial, y, vector, bias is not None, kind == RELU))
        else:
            flat, stride = row_span(y)
            calls.append(functools.partial(_bias_relu_rows_serial, flat, y.shape[0], y.shape[1], stride, vector,
                                           bias is not None, kind == RELU))  # fmt: skip
    if y.size and kind not in (NONE, RELU):
        calls.append(functools.partial(_activation_after, y, kind))
    if len(calls) == 2:
        first, second = calls

        def both() -> None:
            first()
            second()

        return both
    return calls[0] if calls else _nothing


def _nothing() -> None:
    pass
