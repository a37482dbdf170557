"""count_costs: parameters, trainable vs frozen, buffers, MACs and activations, by hand."""

from __future__ import annotations

import cnnlang

SMALL = """network n {
    input 3x8x8
    conv(4, 3x3) -> batchnorm -> relu
    fc(10)
}"""


def test_small_network_totals():
    model = cnnlang.load(SMALL)
    conv = 4 * 3 * 9 + 4          # 112
    bn = 2 * 4                    # gamma, beta
    fc = 4 * 6 * 6 * 10 + 10      # 1450
    assert model.totals["params"] == conv + bn + fc == 1570
    assert model.totals["trainable"] == 1570
    assert model.totals["buffers"] == 8
    assert model.totals["macs"] == (4 * 6 * 6) * 27 + 144 * 10 == 5328
    # input 192, conv/bn/relu 144 each, fc 10
    assert model.totals["activations"] == 192 + 3 * 144 + 10
    assert model.totals["activation_bytes"] == 4 * (192 + 3 * 144 + 10)


def test_per_node_annotations():
    nodes = cnnlang.load(SMALL).graph.nodes
    assert (nodes["conv1"]["params"], nodes["conv1"]["macs"], nodes["conv1"]["activations"]) == (112, 3888, 144)
    assert (nodes["batchnorm1"]["params"], nodes["batchnorm1"]["buffers"]) == (8, 8)
    assert nodes["relu1"]["params"] == nodes["relu1"]["macs"] == 0
    assert nodes["input"]["params"] == 0 and nodes["input"]["activations"] == 192


def test_frozen_layers_are_not_trainable():
    model = cnnlang.load("""network n {
    input 3x8x8
    conv(4, 3x3, frozen = true) -> batchnorm -> relu
    fc(10, frozen = true)
    fc(5)
}""")
    nodes = model.graph.nodes
    assert nodes["conv1"]["params"] == 112 and nodes["conv1"]["trainable"] == 0
    assert nodes["fc1"]["params"] == 1450 and nodes["fc1"]["trainable"] == 0
    assert nodes["fc2"]["trainable"] == 55
    assert model.totals["params"] == 112 + 8 + 1450 + 55
    assert model.totals["trainable"] == 8 + 55


def test_lenet5_totals():
    # The modern LeNet-5 reading: 156 + 2416 + 48120 + 10164 + 850 = 61,706 parameters.
    model = cnnlang.load("lenet5")
    assert model.totals["params"] == 61706
    assert model.totals["trainable"] == 61706
    assert model.totals["buffers"] == 0
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
    assert model.totals["macs"] == macs


def test_vgg16_parameter_count():
    # The well-known 138,357,544 parameters of VGG-16 (torchvision).
    if "vgg16" not in cnnlang.zoo_names():
        import pytest

        pytest.skip("vgg16 is not in the zoo")
    assert cnnlang.load("vgg16").totals["params"] == 138357544


def test_resnet18_parameter_count():
    if "resnet18" not in cnnlang.zoo_names():
        import pytest

        pytest.skip("resnet18 is not in the zoo")
    model = cnnlang.load("resnet18")
    # torchvision resnet18: 11,689,512 parameters; its batchnorms hold 2 buffers of C each
    # (torchvision also counts num_batches_tracked, which is not a tensor of values here).
    assert model.totals["params"] == 11689512
    bn_channels = 64 + 4 * 64 + (4 * 128 + 128) + (4 * 256 + 256) + (4 * 512 + 512)
    assert model.totals["buffers"] == 2 * bn_channels


def test_nodes_after_an_error_have_no_costs():
    model = cnnlang.load("network n { input 3x4x4 ; conv(8, 5x5) ; fc(10) }", keep_going=True)
    totals = model.totals
    assert totals["params"] == 0 and totals["macs"] == 0
    assert totals["activations"] == 48  # the input only
