"""Every layer type of the language has a runtime op."""

from cnnlang.layers import LAYER_TYPES
from cnnlang.runtime.ops import REGISTRY


def test_every_layer_type_has_an_op():
    assert sorted(cls.op for cls in LAYER_TYPES if cls.op not in REGISTRY) == []
