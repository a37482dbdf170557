"""Interchange with other tools: ONNX export and import (with block recovery), and PyTorch
state_dicts in. Needs the optional ``onnx`` extra (``pip install 'cnnlang[onnx]'``) for ONNX;
the PyTorch name mapping needs only safetensors."""

from __future__ import annotations

from cnnlang.errors import UsageError


class InterchangeError(UsageError):
    """A file that cannot be converted; the message says what was found and why."""


class UnsupportedModel(InterchangeError):
    """A well-formed ONNX model with operators cnnlang cannot express (all of them listed)."""


def require_onnx():
    """The ``onnx`` package, or a usage error that says how to install it."""
    try:
        import onnx
    except ImportError:
        raise InterchangeError("ONNX support needs the onnx package: pip install 'cnnlang[onnx]'") from None
    return onnx
