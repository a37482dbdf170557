"""Shape, parameter, buffer, MAC and window rules of each layer type, against direct formulas.

The formulas below are written out independently of cnnlang/layers/window.py:
conv   out = floor((W + 2P - D(K-1) - 1) / S) + 1
pool   the same, or with ceil = true (PyTorch): ceil(...) + 1, minus 1 if the last window starts
       at or beyond W + P
same   out = ceil(W / S)
"""

from __future__ import annotations

import itertools
import math

import pytest

from cnnlang.layers import LAYER_TYPES, REGISTRY, ShapeError, Symbol
from layer_cases import CASES, X


def conv_out(w: int, k: int, s: int, p: int, d: int = 1) -> int:
    return math.floor((w + 2 * p - d * (k - 1) - 1) / s) + 1


def pool_out(w: int, k: int, s: int, p: int, d: int = 1, ceil: bool = False) -> int:
    span = w + 2 * p - d * (k - 1) - 1
    if not ceil:
        return math.floor(span / s) + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= w + p:
        out -= 1
    return out


def bind(op, *positional, **keywords):
    return REGISTRY[op].bind(list(positional), keywords)


def count(shapes: dict) -> int:
    return sum(math.prod(s) for s in shapes.values())


# ---- convolution -------------------------------------------------------------------------


def test_lecture_example_alexnet_conv1():
    conv = bind("conv", 96, (11, 11), stride=4)
    out = conv.output_shape([(3, 227, 227)])
    assert out == (96, 55, 55)
    assert "(227 - 11 + 2*0)/4 + 1 = 55" in conv.explain([(3, 227, 227)], out)
    # 96 filters of 11*11*3 weights plus 96 biases (the AlexNet paper's 34,944).
    assert count(conv.param_shapes([(3, 227, 227)])) == 34944
    assert conv.macs([(3, 227, 227)], out) == 55 * 55 * 96 * 11 * 11 * 3


def test_lecture_example_same_size_with_pad_2():
    conv = bind("conv", 10, (5, 5), stride=1, pad=2)
    assert conv.output_shape([(3, 32, 32)]) == (10, 32, 32)
    assert "(32 - 5 + 2*2)/1 + 1 = 32" in conv.explain([(3, 32, 32)], (10, 32, 32))


def test_lecture_example_7x7_input():
    # 7x7 input, 3x3 filter: stride 1 → 5, stride 2 → 3.
    assert bind("conv", 1, 3).output_shape([(1, 7, 7)]) == (1, 5, 5)
    assert bind("conv", 1, 3, stride=2).output_shape([(1, 7, 7)]) == (1, 3, 3)


def test_conv_grid_against_formula():
    checked = failed = 0
    for w, k, s, p, d in itertools.product((1, 2, 5, 7, 13, 32), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)):
        conv = bind("conv", 4, (k, k), stride=s, pad=p, dilation=d)
        expected = conv_out(w, k, s, p, d)
        if expected >= 1:
            assert conv.output_shape([(3, w, w + 3)]) == (4, expected, conv_out(w + 3, k, s, p, d)), (w, k, s, p, d)
            checked += 1
        else:
            with pytest.raises(ShapeError, match="does not fit"):
                conv.output_shape([(3, w, w)])
            failed += 1
    assert checked > 100 and failed > 10


def test_conv_rectangular_per_axis():
    conv = bind("conv", 6, (3, 5), stride=(2, 1), pad=(1, 2), dilation=(1, 2))
    out = conv.output_shape([(2, 17, 20)])
    assert out == (6, conv_out(17, 3, 2, 1, 1), conv_out(20, 5, 1, 2, 2))
    assert out == (6, 9, 16)
    assert count(conv.param_shapes([(2, 17, 20)])) == 6 * 2 * 3 * 5 + 6


def test_conv_explain_when_axes_differ_and_when_not_exact():
    conv = bind("conv", 4, 3, stride=2)
    text = conv.explain([(1, 8, 9)], conv.output_shape([(1, 8, 9)]))
    assert "H = floor((8 - 3 + 2*0)/2) + 1 = 3" in text
    assert "W = (9 - 3 + 2*0)/2 + 1 = 4" in text
    assert "C = 4 filters" in text


@pytest.mark.parametrize("w", [1, 2, 3, 7, 8, 15, 224])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 11])
@pytest.mark.parametrize("s", [1, 2, 3, 4])
@pytest.mark.parametrize("d", [1, 2])
def test_pad_same_gives_ceil_w_over_s(w, k, s, d):
    conv = bind("conv", 5, k, stride=s, dilation=d, pad=Symbol("same"))
    assert conv.output_shape([(3, w, w)]) == (5, math.ceil(w / s), math.ceil(w / s))


def test_pad_same_known_values():
    assert bind("conv", 64, 7, stride=2, pad=Symbol("same")).output_shape([(3, 224, 224)]) == (64, 112, 112)
    assert bind("conv", 8, 3, stride=2, pad=Symbol("same")).output_shape([(3, 7, 7)]) == (8, 4, 4)
    # TensorFlow splits odd padding with the extra pixel after: 7x7, k3, s2 → total pad 2 → (1, 1);
    # 8x8, k3, s2 → total 1 → (0, 1).
    assert bind("conv", 8, 3, stride=2, pad=Symbol("same")).padding_of((3, 8, 8)) == ((0, 1), (0, 1))
    assert bind("conv", 8, 3, stride=2, pad=Symbol("same")).padding_of((3, 7, 7)) == ((1, 1), (1, 1))


def test_pad_valid_is_zero_padding():
    assert bind("conv", 8, 3, pad=Symbol("valid")).output_shape([(3, 10, 10)]) == (8, 8, 8)


def test_groups():
    conv = bind("conv", 8, (3, 3), groups=4, pad=1)
    out = conv.output_shape([(16, 10, 10)])
    assert out == (8, 10, 10)
    assert count(conv.param_shapes([(16, 10, 10)])) == 8 * (16 // 4) * 3 * 3 + 8
    assert conv.param_shapes([(16, 10, 10)])["weight"] == (8, 4, 3, 3)
    assert conv.macs([(16, 10, 10)], out) == 8 * 10 * 10 * (16 // 4) * 9
    with pytest.raises(ShapeError, match="6 input channels do not split into 4 groups"):
        conv.output_shape([(6, 10, 10)])


def test_depthwise_conv():
    conv = bind("conv", 32, 3, groups=32, pad=1, bias=False)
    assert count(conv.param_shapes([(32, 14, 14)])) == 32 * 9
    assert conv.macs([(32, 14, 14)], (32, 14, 14)) == 32 * 14 * 14 * 9


def test_conv_without_bias():
    conv = bind("conv", 64, 3, bias=False)
    assert conv.param_shapes([(3, 8, 8)]) == {"weight": (64, 3, 3, 3)}


def test_conv_rejects_wrong_rank():
    with pytest.raises(ShapeError, match="C x H x W"):
        bind("conv", 8, 3).output_shape([(3, 32)])
    with pytest.raises(ShapeError, match="use fc"):
        bind("conv", 8, 3).output_shape([(300,)])


def test_conv1d():
    conv = bind("conv1d", 16, 5, stride=2, pad=2)
    out = conv.output_shape([(4, 100)])
    assert out == (16, conv_out(100, 5, 2, 2)) == (16, 50)
    assert count(conv.param_shapes([(4, 100)])) == 16 * 4 * 5 + 16
    assert conv.macs([(4, 100)], out) == 16 * 50 * 4 * 5
    assert conv.window([(4, 100)]) == ((5,), (2,))
    assert bind("conv1d", 3, 3, pad=Symbol("same"), stride=3).output_shape([(1, 10)]) == (3, 4)
    with pytest.raises(ShapeError, match="C x L"):
        conv.output_shape([(4, 10, 10)])


def test_conv1d_grid():
    for w, k, s, p, d in itertools.product((3, 10, 31), (1, 3, 4), (1, 2, 3), (0, 1, 3), (1, 3)):
        conv = bind("conv1d", 2, k, stride=s, pad=p, dilation=d)
        expected = conv_out(w, k, s, p, d)
        if expected >= 1:
            assert conv.output_shape([(5, w)]) == (2, expected)
        else:
            with pytest.raises(ShapeError):
                conv.output_shape([(5, w)])


def test_conv_window_is_the_dilated_kernel():
    assert bind("conv", 8, 3, dilation=2, stride=2).window([(3, 32, 32)]) == ((5, 5), (2, 2))
    assert bind("conv", 8, (1, 7)).window([(3, 32, 32)]) == ((1, 7), (1, 1))


def test_conv_error_names_the_axis_and_numbers():
    with pytest.raises(ShapeError) as caught:
        bind("conv", 8, 5).output_shape([(3, 3, 3)])
    message = str(caught.value)
    assert "output height would be" in message
    assert "(3 - 5 + 2*0)/1 + 1 = -1" in message
    assert "3x3x3" in message


# ---- pooling -----------------------------------------------------------------------------


def test_pool_grid_against_pytorch_formula():
    checked = 0
    for op in ("maxpool", "avgpool"):
        for w, k, s, p, d, ceil in itertools.product(
            (1, 2, 5, 6, 7, 13, 14, 112), (1, 2, 3, 4, 5), (1, 2, 3), (0, 1, 2), (1, 2), (False, True)
        ):
            if op == "avgpool" and d > 1:
                continue  # average pooling has no dilation (as in PyTorch)
            dilation = {"dilation": d} if op == "maxpool" else {}
            pool = bind(op, k, stride=s, pad=p, ceil=ceil, **dilation)
            if p > k // 2:
                with pytest.raises(ShapeError, match="more than half"):
                    pool.output_shape([(3, w, w)])
                continue
            expected = pool_out(w, k, s, p, d, ceil)
            if expected >= 1:
                assert pool.output_shape([(3, w, w)]) == (3, expected, expected), (op, w, k, s, p, d, ceil)
                checked += 1
            else:
                with pytest.raises(ShapeError):
                    pool.output_shape([(3, w, w)])
    assert checked > 500


@pytest.mark.parametrize(
    "w, k, s, p, ceil, expected",
    [
        (112, 3, 2, 0, True, 56),   # GoogLeNet (Caffe) pools: ceil((112-3)/2)+1
        (112, 3, 2, 0, False, 55),
        (56, 3, 2, 0, True, 28),
        (14, 3, 2, 0, True, 7),
        (7, 2, 2, 0, True, 4),      # ceil(5/2)+1
        (7, 2, 2, 0, False, 3),
        (5, 2, 2, 1, True, 3),      # ceil(5/2)+1 = 4, but the 4th window would start at 6 >= 5+1
        (5, 2, 2, 1, False, 3),
        (6, 2, 2, 1, True, 4),      # ceil(6/2)+1 = 4; the last window starts at 6 < 6+1: kept
        (10, 3, 3, 0, True, 4),     # stride defaults to the kernel in the other cases
        (10, 3, 3, 0, False, 3),
        (56, 3, 2, 1, False, 28),   # ResNet's stem pool
    ],
)
def test_pool_hand_computed(w, k, s, p, ceil, expected):
    pool = bind("maxpool", k, stride=s, pad=p, ceil=ceil)
    assert pool.output_shape([(8, w, w)]) == (8, expected, expected)


def test_pool_stride_defaults_to_kernel():
    assert bind("maxpool", 3).output_shape([(2, 9, 9)]) == (2, 3, 3)
    assert bind("avgpool", (2, 3)).output_shape([(2, 8, 9)]) == (2, 4, 3)
    assert bind("maxpool", 2).window([(2, 8, 8)]) == ((2, 2), (2, 2))


def test_pool_explain_mentions_the_dropped_window():
    pool = bind("maxpool", 2, stride=2, pad=1, ceil=True)
    out = pool.output_shape([(1, 5, 5)])
    text = pool.explain([(1, 5, 5)], out)
    assert "- 1 = 3" in text and "padding" in text
    assert "keeps the depth" in text


def test_pool_on_signals_and_wrong_rank():
    assert bind("maxpool", 2).output_shape([(4, 9)]) == (4, 4)
    assert bind("maxpool", 2, ceil=True).output_shape([(4, 9)]) == (4, 5)
    with pytest.raises(ShapeError):
        bind("maxpool", 2).output_shape([(100,)])
    with pytest.raises(ShapeError):
        bind("maxpool", (2, 2)).output_shape([(4, 9)])  # two sizes, one spatial axis


def test_pool_has_no_parameters_or_macs():
    for op in ("maxpool", "avgpool"):
        pool = bind(op, 2)
        assert pool.param_shapes([(3, 8, 8)]) == {}
        assert pool.buffer_shapes([(3, 8, 8)]) == {}
        assert pool.macs([(3, 8, 8)], (3, 4, 4)) == 0


def test_global_avgpool():
    gap = bind("globalavgpool")
    assert gap.output_shape([(512, 7, 7)]) == (512, 1, 1)
    assert gap.output_shape([(16, 40)]) == (16, 1)
    assert gap.window([(512, 7, 7)]) == "global"
    with pytest.raises(ShapeError):
        gap.output_shape([(10,)])


# ---- fully connected, flatten, normalisation ----------------------------------------------


def test_fc_flattens_implicitly():
    fc = bind("fc", 4096)
    out = fc.output_shape([(256, 6, 6)])
    assert out == (4096,)
    assert count(fc.param_shapes([(256, 6, 6)])) == 256 * 6 * 6 * 4096 + 4096  # AlexNet fc6: 37,752,832
    assert count(fc.param_shapes([(256, 6, 6)])) == 37752832
    assert fc.macs([(256, 6, 6)], out) == 9216 * 4096
    assert count(bind("fc", 10, bias=False).param_shapes([(84,)])) == 840
    assert fc.window([(256, 6, 6)]) == "global"


def test_flatten():
    assert bind("flatten").output_shape([(16, 5, 5)]) == (400,)
    assert bind("flatten").output_shape([(7,)]) == (7,)
    assert bind("flatten").param_shapes([(16, 5, 5)]) == {}


def test_batchnorm_params_and_buffers():
    bn = bind("batchnorm")
    assert bn.output_shape([(64, 8, 8)]) == (64, 8, 8)
    assert count(bn.param_shapes([(64, 8, 8)])) == 2 * 64
    assert count(bn.buffer_shapes([(64, 8, 8)])) == 2 * 64
    assert bn.macs([(64, 8, 8)], (64, 8, 8)) == 0
    plain = bind("batchnorm", affine=False)
    assert count(plain.param_shapes([(64, 8, 8)])) == 0
    assert count(plain.buffer_shapes([(64, 8, 8)])) == 2 * 64


# ---- merges ------------------------------------------------------------------------------


def test_add():
    add = bind("add")
    assert add.output_shape([(8, 4, 4), (8, 4, 4), (8, 4, 4)]) == (8, 4, 4)
    with pytest.raises(ShapeError) as caught:
        add.output_shape([(8, 4, 4), (8, 4, 4), (16, 4, 4)])
    assert caught.value.mismatch == (0, 2)
    assert "8x4x4" in str(caught.value) and "16x4x4" in str(caught.value)


def test_concat():
    concat = bind("concat")
    assert concat.output_shape([(8, 4, 4), (3, 4, 4), (5, 4, 4)]) == (16, 4, 4)
    assert concat.output_shape([(8, 4, 4)]) == (8, 4, 4)
    assert concat.output_shape([(8,), (2,)]) == (10,)
    with pytest.raises(ShapeError) as caught:
        concat.output_shape([(8, 4, 4), (8, 4, 5)])
    assert caught.value.mismatch == (0, 1)
    with pytest.raises(ShapeError):
        concat.output_shape([(8, 4, 4), (8, 16)])


# ---- every layer type: one table --------------------------------------------------------

# op -> (positional args, inputs, output shape, params, buffers, macs), all by hand (tests/layer_cases.py).
TABLE = {op: case.rules for op, case in CASES.items()}


def test_table_covers_every_layer_type():
    assert set(TABLE) == {cls.op for cls in LAYER_TYPES}


@pytest.mark.parametrize("op", sorted(TABLE))
def test_layer_table(op):
    positional, inputs, output, params, buffers, macs = TABLE[op]
    layer = REGISTRY[op].bind(positional, {})
    assert layer.output_shape(inputs) == output
    assert count(layer.param_shapes(inputs)) == params
    assert count(layer.buffer_shapes(inputs)) == buffers
    assert layer.macs(inputs, output) == macs
    assert isinstance(layer.explain(inputs, output), str) and layer.explain(inputs, output)
    assert isinstance(layer.label(), str) and layer.label().startswith(op)


@pytest.mark.parametrize("op", ["relu", "tanh", "sigmoid", "softmax", "batchnorm", "dropout", "lrn", "flatten"])
def test_pointwise_layers_have_no_window(op):
    assert REGISTRY[op].bind([], {}).window([X]) is None


@pytest.mark.parametrize("op", ["relu", "tanh", "sigmoid", "softmax", "batchnorm", "dropout", "lrn"])
@pytest.mark.parametrize("shape", [(10,), (3, 17), (5, 2, 9)])
def test_shape_preserving_layers(op, shape):
    assert REGISTRY[op].bind([], {}).output_shape([shape]) == shape


def test_explain_counts_one_filter_in_the_singular():
    from cnnlang.layers import REGISTRY

    layer = REGISTRY["conv"].bind([1, (3,)], {})
    assert layer.explain([(1, 5, 5)], (1, 3, 3)).endswith("; C = 1 filter")
