"""The PyTorch twin of a cnnlang network, for the benchmark scripts and tests that import it by
this name: it lives in :mod:`cnnlang.compare.torch_graph` (``cnnlang bench --compare torch``
uses it too)."""

from cnnlang.compare.torch_graph import GraphModule, ReplayDropout, copy_state, dropout_masks, to_input, to_torch

__all__ = ["GraphModule", "ReplayDropout", "to_torch", "to_input", "copy_state", "dropout_masks"]
