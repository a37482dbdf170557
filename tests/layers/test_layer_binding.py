"""Binding DSL arguments to every registered layer type: names, positions, kinds, errors.

Expected argument lists come from the language description (not from the classes), so a layer
that gains, loses or renames an argument makes these tests fail until they are updated.
"""

from __future__ import annotations

from dataclasses import MISSING, fields

import pytest

from cnnlang.layers import LAYER_TYPES, REGISTRY, ArgumentError, Symbol
from layer_cases import CASES

OPS = [cls.op for cls in LAYER_TYPES]

# From the language description, one entry per layer type in tests/layer_cases.py.
REQUIRED: dict[str, dict[str, object]] = {op: case.required for op, case in CASES.items() if case.required}
POSITIONAL: dict[str, list[str]] = {op: case.positional for op, case in CASES.items() if case.positional}
ARGUMENTS: dict[str, set[str]] = {op: case.arguments for op, case in CASES.items()}
# Valid values for the optional arguments some layers take by position.
OPTIONAL_VALUES = {"p": 0.5, "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def _cls(op: str):
    return next(c for c in LAYER_TYPES if c.op == op)


def _names(cls) -> list[str]:
    return [f.name for f in fields(cls)]


def test_every_layer_type_is_described_here():
    assert set(OPS) == set(ARGUMENTS), "a layer type was added or removed: describe it in tests/layer_cases.py"
    assert len(OPS) == len(set(OPS))


@pytest.mark.parametrize("op", OPS)
def test_argument_names(op):
    assert set(_names(_cls(op))) == ARGUMENTS[op]


@pytest.mark.parametrize("op", OPS)
def test_required_arguments(op):
    required = {f.name for f in fields(_cls(op)) if f.default is MISSING and f.default_factory is MISSING}
    assert required == set(REQUIRED.get(op, {}))


@pytest.mark.parametrize("op", OPS)
def test_registry_maps_name_and_aliases_to_the_class(op):
    cls = _cls(op)
    assert REGISTRY[op] is cls
    for alias in cls.aliases:
        assert REGISTRY[alias] is cls


def test_known_aliases():
    assert REGISTRY["conv2d"].op == "conv"
    assert REGISTRY["linear"].op == "fc"
    assert REGISTRY["dense"].op == "fc"
    assert REGISTRY["bn"].op == "batchnorm"
    assert REGISTRY["gap"].op == "globalavgpool"


@pytest.mark.parametrize("op", OPS)
def test_binds_with_required_arguments_only(op):
    layer = _cls(op).bind([], dict(REQUIRED.get(op, {})))
    assert isinstance(layer, _cls(op))
    for name, value in REQUIRED.get(op, {}).items():
        assert getattr(layer, name) == value


@pytest.mark.parametrize("op", OPS)
def test_binds_required_arguments_by_position(op):
    names = POSITIONAL.get(op, [])
    required = REQUIRED.get(op, {})
    positional = [required[n] for n in names if n in required]
    layer = _cls(op).bind(positional, {})
    for name, value in zip(names, positional):
        assert getattr(layer, name) == value


@pytest.mark.parametrize("op", OPS)
def test_missing_required_argument(op):
    required = REQUIRED.get(op, {})
    if not required:
        pytest.skip(f"{op} has no required arguments")
    for missing in required:
        given = {k: v for k, v in required.items() if k != missing}
        with pytest.raises(ArgumentError) as caught:
            _cls(op).bind([], given)
        message = str(caught.value)
        assert f"'{missing}'" in message
        assert "needs" in message
        assert op in message


@pytest.mark.parametrize("op", OPS)
def test_too_many_positional_arguments(op):
    names = POSITIONAL.get(op, [])
    valid = {**REQUIRED.get(op, {}), **OPTIONAL_VALUES}
    positional = [valid[n] for n in names] + [1]
    with pytest.raises(ArgumentError) as caught:
        _cls(op).bind(positional, {})
    assert caught.value.index == len(names)  # points at the first extra argument
    assert f"takes {len(names)} positional" in str(caught.value)


@pytest.mark.parametrize("op", OPS)
def test_unknown_keyword_suggests_the_closest_name(op):
    cls = _cls(op)
    required = REQUIRED.get(op, {})
    names = _names(cls)
    if not names:
        with pytest.raises(ArgumentError) as caught:
            cls.bind([], {"inplace": True})
        assert f"{op} has no argument 'inplace'" in str(caught.value)
        assert "takes no arguments" in str(caught.value)
        assert caught.value.index == 0
        return
    for name in names:
        typo = name + name[-1]  # one letter doubled
        keywords = {k: v for k, v in required.items() if k != name}
        keywords[typo] = 1
        with pytest.raises(ArgumentError) as caught:
            cls.bind([], keywords)
        message = str(caught.value)
        assert f"{op} has no argument '{typo}'" in message
        assert f"did you mean '{name}'?" in message
        assert caught.value.index == list(keywords).index(typo)


@pytest.mark.parametrize("op", [op for op in OPS if ARGUMENTS[op]])
def test_unknown_keyword_far_from_every_name_lists_the_arguments(op):
    with pytest.raises(ArgumentError) as caught:
        _cls(op).bind([], {**REQUIRED.get(op, {}), "qqqqqqqq": 1})
    message = str(caught.value)
    assert "did you mean" not in message
    for name in ARGUMENTS[op]:
        assert name in message


@pytest.mark.parametrize("op", OPS)
def test_every_argument_rejects_a_string(op):
    """No argument of any layer takes a quoted string; the error names the argument and its position."""
    cls = _cls(op)
    required = REQUIRED.get(op, {})
    for name in _names(cls):
        keywords = dict(required)
        keywords[name] = "hello"
        with pytest.raises(ArgumentError) as caught:
            cls.bind([], keywords)
        assert str(caught.value).startswith(f"argument '{name}' of {op}: expected")
        assert caught.value.index == list(keywords).index(name)


@pytest.mark.parametrize("op", OPS)
def test_argument_given_twice(op):
    names = POSITIONAL.get(op, [])
    if not names:
        pytest.skip("no positional arguments")
    valid = {**REQUIRED.get(op, {}), **OPTIONAL_VALUES}
    positional = [valid[n] for n in names]
    with pytest.raises(ArgumentError) as caught:
        _cls(op).bind(positional, {names[0]: positional[0]})
    assert "given twice" in str(caught.value)
    assert caught.value.index == len(names)


@pytest.mark.parametrize(
    "keywords, fragment",
    [
        ({"filters": 2.5}, "expected a whole number, got 2.5"),
        ({"filters": 0}, "expected a positive whole number, got 0"),
        ({"filters": -4}, "expected a positive whole number, got -4"),
        ({"filters": True}, "expected a whole number, got true"),
        ({"bias": 3}, "expected true or false, got 3"),
        ({"frozen": 1}, "expected true or false, got 1"),
        ({"kernel": (3, 0)}, "expected a positive whole number, got 0"),
        ({"kernel": (1, 2, 3, 4)}, "expected one to three sizes, got 4"),
        ({"stride": 1.5}, "expected a whole number, got 1.5"),
        ({"pad": -1}, "expected a whole number >= 0, got -1"),
        ({"pad": Symbol("full")}, "expected a padding size, 'same' or 'valid', got 'full'"),
        ({"groups": 0}, "expected a positive whole number, got 0"),
        ({"dilation": 0}, "expected a positive whole number, got 0"),
    ],
)
def test_conv_argument_kinds(keywords, fragment):
    base = {"filters": 8, "kernel": (3, 3)}
    with pytest.raises(ArgumentError) as caught:
        REGISTRY["conv"].bind([], {**base, **keywords})
    assert fragment in str(caught.value)
    (name,) = keywords
    assert str(caught.value).startswith(f"argument '{name}' of conv")


def test_conv_accepts_whole_floats_and_symbols():
    layer = REGISTRY["conv"].bind([4.0, 3], {"pad": Symbol("same"), "stride": (2, 1)})
    assert layer.filters == 4 and isinstance(layer.filters, int)
    assert layer.kernel == (3,)
    assert layer.pad == "same"
    assert layer.stride == (2, 1)
    assert REGISTRY["conv"].bind([4, 3], {"pad": Symbol("valid")}).pad == "valid"
    assert REGISTRY["conv"].bind([4, 3], {"pad": 0}).pad == (0,)


def test_conv_filters_must_split_into_groups():
    with pytest.raises(ArgumentError) as caught:
        REGISTRY["conv"].bind([10, 3], {"groups": 4})
    assert "10 filters do not split into 4 groups" in str(caught.value)
    assert caught.value.index is None  # the call as a whole is wrong
    assert REGISTRY["conv"].bind([12, 3], {"groups": 4}).groups == 4


@pytest.mark.parametrize(
    "op, positional, keywords",
    [
        ("conv", [8, (3, 3, 3)], {}),
        ("conv", [8, 3], {"stride": (1, 1, 1)}),
        ("conv", [8, 3], {"pad": (1, 1, 1)}),
        ("conv1d", [8, (3, 3)], {}),
        ("conv1d", [8, 3], {"dilation": (2, 2)}),
        ("maxpool", [(2, 2, 2)], {}),
        ("avgpool", [2], {"pad": (0, 0, 0)}),
    ],
)
def test_too_many_sizes_for_the_rank(op, positional, keywords):
    with pytest.raises(ArgumentError) as caught:
        REGISTRY[op].bind(positional, keywords)
    assert "needs 1 or" in str(caught.value)


@pytest.mark.parametrize(
    "op, keywords, fragment",
    [
        ("dropout", {"p": 1}, "expected a probability in [0, 1), got 1"),
        ("dropout", {"p": -0.1}, "expected a probability in [0, 1), got -0.1"),
        ("batchnorm", {"eps": 0}, "expected a number > 0, got 0"),
        ("batchnorm", {"momentum": 1.5}, "expected a number in [0, 1], got 1.5"),
        ("batchnorm", {"affine": 0}, "expected true or false, got 0"),
        ("lrn", {"size": 0}, "expected a positive whole number, got 0"),
        ("lrn", {"alpha": True}, "expected a number, got true"),
        ("lrn", {"alpha": 10**400}, "too large"),
        ("fc", {"units": 10, "bias": 3}, "expected true or false, got 3"),
        ("fc", {"units": 0.5}, "expected a whole number, got 0.5"),
        ("maxpool", {"kernel": 2, "ceil": 1}, "expected true or false, got 1"),
        ("maxpool", {"kernel": 2, "pad": -1}, "expected a whole number >= 0, got -1"),
        ("maxpool", {"kernel": 2, "pad": Symbol("same")}, "expected a whole number, got 'same'"),
        ("avgpool", {"kernel": 2, "count_pad": 2}, "expected true or false, got 2"),
    ],
)
def test_other_argument_kinds(op, keywords, fragment):
    with pytest.raises(ArgumentError) as caught:
        REGISTRY[op].bind([], keywords)
    assert fragment in str(caught.value)


def test_defaults():
    conv = REGISTRY["conv"].bind([8, 3], {})
    assert (conv.stride, conv.pad, conv.dilation, conv.groups, conv.bias, conv.frozen) == ((1,), (0,), (1,), 1, True, False)
    pool = REGISTRY["maxpool"].bind([3], {})
    assert pool.stride is None and pool.ceil is False and pool.pad == (0,)
    assert REGISTRY["dropout"].bind([], {}).p == 0.5
    assert REGISTRY["dropout"].bind([0], {}).p == 0.0
    bn = REGISTRY["batchnorm"].bind([], {})
    assert bn.affine is True and bn.eps > 0
    fc = REGISTRY["fc"].bind([10], {})
    assert fc.bias is True and fc.frozen is False


def test_trainable_follows_frozen():
    assert REGISTRY["conv"].bind([8, 3], {}).trainable
    assert not REGISTRY["conv"].bind([8, 3], {"frozen": True}).trainable
    assert not REGISTRY["fc"].bind([8], {"frozen": True}).trainable
