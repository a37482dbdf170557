"""receptive_field: r_out = r_in + (k - 1) * j_in, j_out = j_in * s, by hand."""

from __future__ import annotations

import pytest

import cnnlang


def rf(source: str) -> dict:
    graph = cnnlang.load(source).graph
    return {n: (graph.nodes[n].get("rf"), graph.nodes[n].get("jump")) for n in graph}


def test_two_3x3_convs_see_5x5():
    fields = rf("network n { input 3x32x32 ; conv(8, 3x3, pad = 1) ; conv(8, 3x3, pad = 1) }")
    assert fields["input"] == ((1, 1), (1, 1))
    assert fields["conv1"] == ((3, 3), (1, 1))
    assert fields["conv2"] == ((5, 5), (1, 1))


def test_three_3x3_convs_see_7x7():
    assert rf("network n { input 3x32x32 ; conv(8, 3x3) * 3 }")["conv3"][0] == (7, 7)


def test_stride_2_then_3x3_sees_7():
    fields = rf("network n { input 3x32x32 ; conv(8, 3x3, stride = 2) ; conv(8, 3x3) }")
    assert fields["conv1"] == ((3, 3), (2, 2))
    assert fields["conv2"] == ((7, 7), (2, 2))


def test_vgg_style_stack():
    source = """network n {
    input 3x224x224
    c1: conv(64, 3x3, pad = 1)
    c2: conv(64, 3x3, pad = 1)
    p1: maxpool(2x2, stride = 2)
    c3: conv(128, 3x3, pad = 1)
    c4: conv(128, 3x3, pad = 1)
    p2: maxpool(2x2, stride = 2)
    c5: conv(256, 3x3, pad = 1)
}"""
    fields = rf(source)
    # 1 → 3 → 5 → (pool: +1*1) 6, jump 2 → 10 → 14 → (pool: +1*2) 16, jump 4 → 24
    expected = {"c1": 3, "c2": 5, "p1": 6, "c3": 10, "c4": 14, "p2": 16, "c5": 24}
    jumps = {"c1": 1, "c2": 1, "p1": 2, "c3": 2, "c4": 2, "p2": 4, "c5": 4}
    for name, size in expected.items():
        assert fields[name] == ((size, size), (jumps[name],) * 2), name


def test_vgg16_pool5_sees_212():
    if "vgg16" not in cnnlang.zoo_names():
        pytest.skip("vgg16 is not in the zoo")
    graph = cnnlang.load("vgg16").graph
    pools = [n for n in graph if graph.nodes[n]["op"] == "maxpool"]
    # 6, 16, 44, 100, 212 (the standard VGG-16 receptive fields)
    assert [graph.nodes[p]["rf"][0] for p in sorted(pools, key=lambda n: graph.nodes[n]["order"])] == [6, 16, 44, 100, 212]
    assert graph.nodes[pools[-1]]["jump"] == (32, 32)


def test_dilation_widens_the_kernel():
    fields = rf("network n { input 3x32x32 ; conv(8, 3x3, dilation = 2) ; conv(8, 3x3, dilation = 2) }")
    assert fields["conv1"][0] == (5, 5)
    assert fields["conv2"][0] == (9, 9)


def test_rectangular_kernels_per_axis():
    fields = rf("network n { input 3x32x32 ; conv(8, 1x7) ; conv(8, 7x1, stride = (2, 1)) ; conv(8, 3x3) }")
    assert fields["conv1"] == ((1, 7), (1, 1))
    assert fields["conv2"] == ((7, 7), (2, 1))
    assert fields["conv3"] == ((11, 9), (2, 1))


def test_pointwise_layers_keep_the_field():
    fields = rf("network n { input 3x32x32 ; conv(8, 5x5) -> batchnorm -> relu -> dropout }")
    assert fields["relu1"] == fields["batchnorm1"] == fields["dropout1"] == ((5, 5), (1, 1))


def test_branches_join_with_the_widest_field():
    fields = rf("""network n {
    input 3x32x32
    concat {
        branch { conv(8, 1x1) }
        branch { conv(8, 5x5, pad = 2) }
        branch { maxpool(3x3, stride = 1, pad = 1) -> conv(8, 3x3, pad = 1) }
    }
    conv(8, 3x3, pad = 1)
}""")
    assert fields["conv1"][0] == (1, 1)
    assert fields["conv2"][0] == (5, 5)
    assert fields["conv3"][0] == (5, 5)
    assert fields["concat1"][0] == (5, 5)
    assert fields["conv4"][0] == (7, 7)


def test_global_layers_see_the_whole_input():
    fields = rf("network n { input 3x40x30 ; conv(8, 3x3) ; globalavgpool ; fc(10) }")
    assert fields["globalavgpool1"][0] == (40, 30)
    assert fields["fc1"][0] == (40, 30)


def test_flatten_sees_the_whole_input():
    assert rf("network n { input 3x12x12 ; conv(8, 3x3) ; flatten }")["flatten1"][0] == (12, 12)


def test_one_dimensional():
    fields = rf("network n { input 2x100 ; conv1d(4, 5, stride = 2) ; maxpool(3, stride = 2) }")
    assert fields["conv1d1"] == ((5,), (2,))
    assert fields["maxpool1"] == ((5 + 2 * 2,), (4,))


def test_no_field_after_an_error():
    graph = cnnlang.load("network n { input 3x4x4 ; conv(8, 5x5) ; relu }", keep_going=True).graph
    assert "rf" not in graph.nodes["conv1"] and "rf" not in graph.nodes["relu1"]
