"""The test data for every layer type, one entry each: what the language description says about
its arguments, one hand-computed row of its rules, and the examples that the generic tests run
through its reference, the runtime's op, finite differences and PyTorch.

Adding a layer type means adding its entry here; the generic tests (tests/layers/test_layer_binding.py,
test_layer_rules.py, test_layer_reference.py) pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnnlang.layers import REGISTRY, Symbol

X = (4, 6, 6)
#: examples per batch in the generic tests
BATCH = 2


@dataclass
class LayerCase:
    #: every argument name, from the language description (not from the class)
    arguments: set[str] = field(default_factory=set)
    #: required arguments, with a valid value for each
    required: dict[str, object] = field(default_factory=dict)
    #: the arguments that may be given by position, in order
    positional: list[str] = field(default_factory=list)
    #: (positional args, input shapes, output shape, params, buffers, MACs), all by hand
    rules: tuple = ()
    #: (positional args, keyword args, per-example input shapes) for the reference, op and torch
    #: tests; small shapes (the gradient check perturbs every value)
    examples: list[tuple[list, dict, list[tuple[int, ...]]]] = field(default_factory=list)


CONV_ARGUMENTS = {"filters", "kernel", "stride", "pad", "dilation", "groups", "bias", "frozen", "weights"}
POOL_ARGUMENTS = {"kernel", "stride", "pad", "ceil"}

CASES: dict[str, LayerCase] = {
    "conv": LayerCase(
        CONV_ARGUMENTS, {"filters": 8, "kernel": (3, 3)}, ["filters", "kernel"],
        ([8, 3], [X], (8, 4, 4), 8 * 4 * 9 + 8, 0, 8 * 4 * 4 * 4 * 9),
        [([4, 3], {"stride": 2, "pad": 1}, [(3, 7, 6)]),
         ([4, (3, 2)], {"pad": Symbol("same"), "dilation": (2, 1), "groups": 2, "bias": False}, [(4, 6, 5)])],
    ),
    "conv1d": LayerCase(
        CONV_ARGUMENTS, {"filters": 8, "kernel": (3,)}, ["filters", "kernel"],
        ([8, 3], [(4, 6)], (8, 4), 8 * 4 * 3 + 8, 0, 8 * 4 * 4 * 3),
        [([3, 3], {"stride": 2, "pad": Symbol("same"), "dilation": 1}, [(2, 9)])],
    ),
    "maxpool": LayerCase(
        POOL_ARGUMENTS | {"dilation"}, {"kernel": (2, 2)}, ["kernel"],
        ([2], [X], (4, 3, 3), 0, 0, 0),
        [([3], {"stride": 2, "pad": 1, "ceil": True}, [(2, 7, 6)]),
         ([(3, 2)], {"stride": (1, 2), "dilation": (2, 1), "pad": (1, 0)}, [(2, 7, 5)]),
         ([2], {"stride": 1, "dilation": 2, "ceil": True}, [(2, 9)])],
    ),
    "avgpool": LayerCase(
        POOL_ARGUMENTS | {"count_pad"}, {"kernel": (2, 2)}, ["kernel"],  # PyTorch's AvgPool2d has no dilation
        ([3], [X], (4, 2, 2), 0, 0, 0),
        [([3], {"stride": 2, "pad": 1, "ceil": True}, [(2, 7, 6)]),
         ([3], {"stride": 2, "pad": 1, "ceil": True, "count_pad": False}, [(2, 7, 6)]),
         ([3], {"stride": 2, "pad": 1, "ceil": True}, [(3, 8)])],
    ),
    "globalavgpool": LayerCase(
        rules=([], [X], (4, 1, 1), 0, 0, 0), examples=[([], {}, [(3, 4, 5)]), ([], {}, [(3, 7)])]
    ),
    "fc": LayerCase(
        {"units", "bias", "frozen"}, {"units": 10}, ["units"],
        ([10], [X], (10,), 144 * 10 + 10, 0, 1440),
        [([5], {}, [(2, 3, 3)]), ([4], {"bias": False}, [(6,)])],
    ),
    "flatten": LayerCase(rules=([], [X], (144,), 0, 0, 0), examples=[([], {}, [(2, 3, 4)])]),
    "relu": LayerCase(rules=([], [X], X, 0, 0, 0), examples=[([], {}, [(3, 4, 4)])]),
    "prelu": LayerCase(
        {"shared"}, rules=([], [X], X, 4, 0, 0),
        examples=[([], {}, [(3, 4, 4)]), ([], {"shared": True}, [(5,)]), ([], {}, [(2, 6)])],
    ),
    "tanh": LayerCase(rules=([], [X], X, 0, 0, 0), examples=[([], {}, [(5,)])]),
    "sigmoid": LayerCase(rules=([], [X], X, 0, 0, 0), examples=[([], {}, [(2, 6)])]),
    "softmax": LayerCase(
        rules=([], [X], X, 0, 0, 0), examples=[([], {}, [(4, 3, 3)]), ([], {}, [(3, 5)]), ([], {}, [(10,)])]
    ),
    "batchnorm": LayerCase(
        {"eps", "momentum", "affine"}, rules=([], [X], X, 8, 8, 0),
        examples=[([], {}, [(3, 4, 4)]), ([], {"affine": False, "momentum": 0.3}, [(3, 5)]), ([], {"eps": 1e-3}, [(6,)])],
    ),
    "lrn": LayerCase(
        {"size", "alpha", "beta", "k"}, positional=["size", "alpha", "beta", "k"], rules=([], [X], X, 0, 0, 0),
        examples=[([3, 0.5, 0.75, 1.0], {}, [(5, 3, 3)]), ([], {"size": 4, "alpha": 2.0, "beta": 1.5}, [(6,)])],
    ),
    "dropout": LayerCase({"p"}, positional=["p"], rules=([], [X], X, 0, 0, 0), examples=[([0.4], {}, [(3, 4, 4)])]),
    "add": LayerCase(rules=([], [X, X], X, 0, 0, 0), examples=[([], {}, [(2, 3, 3), (2, 3, 3), (2, 3, 3)])]),
    "concat": LayerCase(
        rules=([], [X, (2, 6, 6)], (6, 6, 6), 0, 0, 0), examples=[([], {}, [(2, 3, 3), (3, 3, 3)]), ([], {}, [(4,), (2,)])]
    ),
}


def layer_example(op: str, index: int, seed: int = 0):
    """(bound layer, per-example input shapes, inputs, params, buffers) for example ``index`` of
    layer ``op``: a batch of BATCH in the user's layout, float64, away from kinks and ties."""
    positional, keywords, shapes = CASES[op].examples[index]
    layer = REGISTRY[op].bind(list(positional), dict(keywords))
    rng = np.random.default_rng(seed)
    inputs = []
    for shape in shapes:
        if op == "maxpool":  # distinct values: no ties, so the max is differentiable
            x = rng.permutation(BATCH * int(np.prod(shape))).reshape(BATCH, *shape) * 0.1
        else:
            x = rng.standard_normal((BATCH, *shape))
            x[np.abs(x) < 1e-2] = 0.5  # away from the kinks of relu and prelu
        inputs.append(x)
    params = {
        name: rng.standard_normal(shape) * 0.5 + (1.0 if name == "gamma" else 0.0)
        for name, shape in layer.param_shapes(shapes).items()
    }
    buffers = {
        name: rng.standard_normal(shape) * 0.1 + (1.5 if name == "running_var" else 0.0)
        for name, shape in layer.buffer_shapes(shapes).items()
    }
    return layer, shapes, inputs, params, buffers
