"""Every layer type of the language has a runtime op on the CPU backend, registered once."""

import pytest

from cnnlang.layers import LAYER_TYPES
from cnnlang.runtime.ops import REGISTRY, Op, op_class, register


def test_every_layer_type_has_a_cpu_op():
    assert sorted(cls.op for cls in LAYER_TYPES if (cls.op, "cpu") not in REGISTRY) == []


def test_op_class_finds_by_backend_and_refuses_a_second_registration():
    assert op_class("relu", "cpu") is REGISTRY[("relu", "cpu")]
    with pytest.raises(KeyError):
        op_class("relu", "no-such-backend")
    with pytest.raises(ValueError, match="two ops for 'relu' on the cpu backend"):
        register("relu")(type("AnotherReLU", (Op,), {}))
