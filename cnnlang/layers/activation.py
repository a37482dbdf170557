"""Activations: ``relu``, ``prelu``, ``tanh``, ``sigmoid`` (element-wise) and ``softmax`` over channels.

The reference backward passes use the saved output where the derivative is a function of it
(tanh' = 1 - y^2, sigmoid' = y (1 - y)), as the kernels do.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import LayerType, Shape, arg, flag


@dataclass(frozen=True)
class ReLU(LayerType):
    op = "relu"
    category = "elementwise"
    summary = "max(0, x)"
    epilogue_activation = True
    weight_init_before = "he"

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        return np.maximum(inputs[0], 0.0)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        return [dy * (inputs[0] > 0)], {}  # 0 at x = 0, as PyTorch

    def torch_module(self, inputs):
        from torch import nn

        return nn.ReLU()


@dataclass(frozen=True)
class PReLU(LayerType):
    """He et al. 2015: max(0, x) + a * min(0, x) with a learned slope a per channel (or one
    shared), starting at 0.25; the layer before it is initialised for that slope."""

    op = "prelu"
    category = "elementwise"
    summary = "max(0, x) + a min(0, x), a learned slope per channel"
    weight_init_before = "he"
    negative_slope = 0.25

    shared: bool = arg(flag, False, doc="one slope for every channel instead of one each")

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        return {"weight": (1 if self.shared else inputs[0][0],)}

    def initial_value(self, name: str) -> float | None:
        return self.negative_slope if name == "weight" else super().initial_value(name)

    def _slope(self, x, weight):
        return weight.reshape(1, -1, *[1] * (x.ndim - 2))

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        x = inputs[0]
        return np.where(x > 0, x, self._slope(x, params["weight"]) * x)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        x = inputs[0]
        dx = np.where(x > 0, dy, self._slope(x, params["weight"]) * dy)
        per_channel = np.where(x > 0, 0.0, dy * x).sum(axis=(0, *range(2, x.ndim)))
        return [dx], {"weight": per_channel.sum(keepdims=True) if self.shared else per_channel}

    def torch_module(self, inputs):
        from torch import nn

        return nn.PReLU(1 if self.shared else inputs[0][0])


@dataclass(frozen=True)
class Tanh(LayerType):
    op = "tanh"
    category = "elementwise"
    summary = "hyperbolic tangent"
    epilogue_activation = True

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        return np.tanh(inputs[0])

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        import numpy as np

        return [dy * (1 - np.tanh(inputs[0]) ** 2)], {}

    def torch_module(self, inputs):
        from torch import nn

        return nn.Tanh()


@dataclass(frozen=True)
class Sigmoid(LayerType):
    op = "sigmoid"
    category = "elementwise"
    summary = "1 / (1 + exp(-x))"
    epilogue_activation = True

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        return 1 / (1 + np.exp(-inputs[0]))

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        y = self.forward_reference(inputs, params, buffers)
        return [dy * y * (1 - y)], {}

    def torch_module(self, inputs):
        from torch import nn

        return nn.Sigmoid()


@dataclass(frozen=True)
class Softmax(LayerType):
    op = "softmax"
    category = "opaque"
    summary = "normalised exponentials over the channel axis"

    def forward_reference(self, inputs, params, buffers, train=False):
        import numpy as np

        x = inputs[0]
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def backward_reference(self, inputs, params, buffers, dy, train=False):
        y = self.forward_reference(inputs, params, buffers)
        return [y * (dy - (dy * y).sum(axis=1, keepdims=True))], {}

    def torch_module(self, inputs):
        from torch import nn

        return nn.Softmax(dim=1)
