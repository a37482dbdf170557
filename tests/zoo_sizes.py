"""Zoo models at a reduced input size, so tests over every zoo model stay fast."""

from __future__ import annotations

import cnnlang


def reduced(name: str) -> cnnlang.Model:
    """The model at the smallest of a few input sizes it compiles at (its own size at worst)."""
    full = cnnlang.load(name)
    channels = full.input_shape[0]
    for side in (64, 96, 128):
        if side < full.input_shape[-1]:
            try:
                return cnnlang.load(name, input_shape=(channels, side, side))
            except cnnlang.CnnError:
                continue
    return full
