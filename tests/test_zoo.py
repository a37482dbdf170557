"""The bundled zoo compiles and matches the published reference counts exactly.

The numbers below are reference values typed in by hand (torchvision / the papers); the test
never computes them. Parameters exclude batchnorm running statistics; MACs count conv and fully
connected multiply-accumulates only, bias adds excluded.
"""

from __future__ import annotations

import pytest

import cnnlang
from cnnlang.report import to_json

# (zoo name, input shape, params, MACs, output shape)
REFERENCE = [
    ("lenet5", (1, 32, 32), 61_706, 416_520, (10,)),
    ("alexnet", (3, 224, 224), 61_100_840, 714_188_480, (1000,)),
    ("alexnet_paper", (3, 227, 227), 60_965_224, 724_406_816, (1000,)),
    ("zfnet", (3, 224, 224), 62_357_608, 1_168_032_896, (1000,)),
    ("vgg11", (3, 224, 224), 132_863_336, 7_609_090_048, (1000,)),
    ("vgg13", (3, 224, 224), 133_047_848, 11_308_466_176, (1000,)),
    ("vgg16", (3, 224, 224), 138_357_544, 15_470_264_320, (1000,)),
    ("vgg19", (3, 224, 224), 143_667_240, 19_632_062_464, (1000,)),
    ("vgg16_bn", (3, 224, 224), 138_365_992, 15_470_264_320, (1000,)),
    ("googlenet", (3, 224, 224), 6_624_904, 1_498_376_192, (1000,)),
    ("googlenet_paper", (3, 224, 224), 6_998_552, 1_582_671_872, (1000,)),
    ("resnet18", (3, 224, 224), 11_689_512, 1_814_073_344, (1000,)),
    ("resnet34", (3, 224, 224), 21_797_672, 3_663_761_408, (1000,)),
    ("resnet50", (3, 224, 224), 25_557_032, 4_089_184_256, (1000,)),
    ("resnet101", (3, 224, 224), 44_549_160, 7_801_405_440, (1000,)),
    ("resnet152", (3, 224, 224), 60_192_808, 11_513_626_624, (1000,)),
    # The paper's 269,722 (option A shortcuts) plus the two projections' 512 + 64 and 2,048 + 128;
    # MACs: 442,368 + 3 x 4,718,592 + 3,670,016 + 2 x 4,718,592 + 3,670,016 + 2 x 4,718,592 + 640.
    ("resnet20", (3, 32, 32), 272_474, 40_813_184, (10,)),
    # Keras's keras.applications.MobileNet() summary: 4,231,976 trainable parameters (its
    # 21,888 non-trainable ones are the running statistics); MACs: the paper's Table 1 sums to
    # 568.74 million, printed there as 569 million.
    ("mobilenet_v1", (3, 224, 224), 4_231_976, 568_740_352, (1000,)),
]


@pytest.mark.parametrize(("name", "input_shape", "params", "macs", "output_shape"), REFERENCE,
                         ids=[row[0] for row in REFERENCE])
def test_zoo_model_matches_reference(name, input_shape, params, macs, output_shape):
    model = cnnlang.load(name)
    assert model.errors == []
    assert model.input_shape == input_shape
    assert model.output_shape == output_shape
    assert model.totals["params"] == params
    assert model.totals["macs"] == macs
    # Nothing in the zoo is frozen.
    assert model.totals["trainable"] == params


def test_zoo_names_are_exactly_the_reference_models():
    assert sorted(cnnlang.zoo_names()) == sorted(row[0] for row in REFERENCE)
    assert len(REFERENCE) == 18  # 16 ImageNet models, lenet5 and the CIFAR resnet20


def test_batchnorm_buffers():
    # Two running statistics per batchnorm channel; models without batchnorm have none.
    assert cnnlang.load("vgg16").totals["buffers"] == 0
    assert cnnlang.load("googlenet_paper").totals["buffers"] == 0
    # vgg16_bn: batchnorm after each of the 13 convolutions, 4,224 channels in all.
    assert cnnlang.load("vgg16_bn").totals["buffers"] == 2 * 4_224
    # vgg16_bn - vgg16 params are the batchnorm weights and biases: the same 2 per channel.
    assert cnnlang.load("vgg16_bn").totals["params"] - cnnlang.load("vgg16").totals["params"] == 2 * 4_224
    # mobilenet_v1: Keras's 21,888 non-trainable parameters.
    assert cnnlang.load("mobilenet_v1").totals["buffers"] == 21_888


def _block_output_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """The output shape of each top-level block instance (its last layer's output)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in to_json(cnnlang.load(name))["layers"]:
        top = layer["block"].split("/")[0]
        if top:
            shapes[top] = tuple(layer["output_shape"])
    return shapes


@pytest.mark.parametrize(("name", "stages"), [
    ("resnet18", [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]),
    ("resnet50", [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]),
])
def test_resnet_stage_shapes(name, stages):
    # One shape per stage (conv2_x .. conv5_x), in order.
    distinct = list(dict.fromkeys(_block_output_shapes(name).values()))
    assert distinct == stages


@pytest.mark.parametrize("name", ["googlenet", "googlenet_paper"])
def test_googlenet_inception_shapes(name):
    shapes = _block_output_shapes(name)
    assert {label: shapes[label] for label in shapes if label.startswith("inception")} == {
        "inception3a": (256, 28, 28), "inception3b": (480, 28, 28),
        "inception4a": (512, 14, 14), "inception4b": (512, 14, 14), "inception4c": (512, 14, 14),
        "inception4d": (528, 14, 14), "inception4e": (832, 14, 14),
        "inception5a": (832, 7, 7), "inception5b": (1024, 7, 7),
    }
