"""cnnlang weights import: PyTorch state_dicts (safetensors) mapped onto zoo models by order,
kind and shape. Without torch, the file is written here in torchvision's names from the zoo's
own shapes; with torch installed, a torchvision-layout ResNet-18 written in torch gives the
weights and the reference output."""

from __future__ import annotations

import random

import numpy as np
import pytest
from interchange_compare import TOLERANCE, random_input, relative_error
from safetensors.numpy import save_file
from zoo_sizes import reduced

from cnnlang.cli import main
from cnnlang.interchange import InterchangeError
from cnnlang.interchange.torch_names import map_state_dict

TORCH_LEAVES = {"gamma": "weight", "beta": "bias"}


def torchvision_resnet_name(node: str, blocks_per_stage: list[int]) -> str:
    """torchvision's module name of a layer of the zoo's ResNet-18/34 (basic blocks)."""
    if "/" not in node:
        return {"conv1": "conv1", "batchnorm1": "bn1", "fc1": "fc"}[node]
    block, layer = node.split("/")
    index = int(block.removeprefix("basic")) - 1
    stage = 0
    while index >= blocks_per_stage[stage]:
        index -= blocks_per_stage[stage]
        stage += 1
    local = {"shortcut_conv1": "downsample.0", "shortcut_bn1": "downsample.1"}.get(layer)
    local = local or layer.replace("batchnorm", "bn")
    return f"layer{stage + 1}.{index}.{local}"


def torchvision_state(network, blocks_per_stage) -> dict[str, np.ndarray]:
    state = {}
    for name, value in network.state().items():
        node, leaf = name.rsplit(".", 1)
        module = torchvision_resnet_name(node, blocks_per_stage)
        state[f"{module}.{TORCH_LEAVES.get(leaf, leaf)}"] = value.copy()
        if leaf == "running_var":
            state[f"{module}.num_batches_tracked"] = np.array(100, np.int64)
    keys = list(state)
    random.Random(0).shuffle(keys)  # safetensors keeps no order anyway; the mapping must not need one
    return {k: state[k] for k in keys}


@pytest.fixture(scope="module")
def resnet18():
    model = reduced("resnet18")
    source = model.build(seed=5)
    rng = np.random.default_rng(1)
    for name, value in source.buffers.items():  # statistics that are not the defaults
        value[...] = rng.uniform(0.5, 1.5, value.shape) if name.endswith("var") else rng.normal(0, 0.1, value.shape)
    return model, source


def test_torchvision_names_load_into_the_zoo_model_with_identical_outputs(resnet18, tmp_path, capsys):
    model, source = resnet18
    save_file(torchvision_state(source, [2, 2, 2, 2]), str(tmp_path / "torch.safetensors"))
    out = tmp_path / "cnnlang.safetensors"
    assert main(["weights", "import", str(tmp_path / "torch.safetensors"), "--model", "resnet18",
                 "--input", "3x64x64", "-o", str(out)]) == 0
    table = capsys.readouterr().out
    assert "layer2.0.downsample.0  basic3/shortcut_conv1" in table
    assert "layer1.0.bn1" in table and "fc " in table
    loaded = model.build(seed=99)
    loaded.load(out)
    for name, value in source.state().items():
        np.testing.assert_array_equal(loaded.state()[name], value)
    x = random_input(model.input_shape)
    source.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded.forward(x), source.forward(x))


def test_gamma_and_beta_names_are_accepted_too(resnet18):
    model, source = resnet18
    state = {k.replace("bn1.weight", "bn1.gamma").replace("bn1.bias", "bn1.beta"): v
             for k, v in torchvision_state(source, [2, 2, 2, 2]).items()}
    pairs, weights = map_state_dict(model, state)
    np.testing.assert_array_equal(weights["batchnorm1.gamma"], source.params["batchnorm1.gamma"])
    assert [p.node for p in pairs][:3] == ["conv1", "batchnorm1", "basic1/conv1"]


def test_a_shape_that_does_not_fit_is_named_with_both_sides(resnet18):
    model, source = resnet18
    state = torchvision_state(source, [2, 2, 2, 2])
    state["layer3.0.conv2.weight"] = np.zeros((256, 256, 1, 1), np.float32)
    with pytest.raises(InterchangeError) as caught:
        map_state_dict(model, state)
    assert "cnnlang's basic5/conv2.weight is 256x256x3x3, but PyTorch's layer3.0.conv2.weight" in str(caught.value)


def test_extra_modules_are_refused_unless_skipped(resnet18):
    model, source = resnet18
    state = torchvision_state(source, [2, 2, 2, 2])
    state["aux1.fc.weight"] = np.zeros((10, 512), np.float32)
    with pytest.raises(InterchangeError, match="the model has 1, the file 2; PyTorch's file has more"):
        map_state_dict(model, state)
    map_state_dict(model, state, skip=["aux1"])


def test_pickle_files_are_refused(tmp_path, capsys):
    (tmp_path / "model.pth").write_bytes(b"\x80\x04not read")
    assert main(["weights", "import", str(tmp_path / "model.pth"), "--model", "lenet5", "-o", str(tmp_path / "o.safetensors")]) == 2
    assert "pickle" in capsys.readouterr().err


# ---- with torch: a torchvision-layout ResNet-18 gives the weights and the expected output


def _torch_resnet18():
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch (pip install torch==2.13.0)")
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(nn.Module):  # torchvision.models.resnet18's module names and order
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths, inplanes = [64, 128, 256, 512], 64
            for index, planes in enumerate(widths):
                stride = 1 if index == 0 else 2
                setattr(self, f"layer{index + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes, 1)))
                inplanes = planes
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    torch.manual_seed(0)
    net = ResNet18()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return torch, net.eval()


def test_pytorch_state_dict_gives_pytorchs_output(tmp_path):
    torch, net = _torch_resnet18()
    from safetensors.torch import save_file as save_torch

    save_torch(net.state_dict(), str(tmp_path / "torch.safetensors"))
    out = tmp_path / "cnnlang.safetensors"
    assert main(["weights", "import", str(tmp_path / "torch.safetensors"), "--model", "resnet18",
                 "--input", "3x64x64", "-o", str(out)]) == 0
    network = reduced("resnet18").build()
    network.load(out)
    network.eval()
    x = random_input((3, 64, 64))
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert relative_error(network.forward(x), expected) < TOLERANCE


def test_torch_onnx_export_imports_as_the_zoo_reads(tmp_path):
    torch, net = _torch_resnet18()
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from cnnlang.interchange.importer import import_onnx

    path = tmp_path / "resnet18.onnx"
    x = random_input((3, 64, 64), batch=1)
    # Without constant folding the exporter keeps batchnorm apart from the convolutions, as the zoo writes it.
    torch.onnx.export(net, torch.from_numpy(x), str(path), dynamo=False, input_names=["image"], do_constant_folding=False)
    imported = import_onnx(path)
    assert "residual_block(64) * 2" in imported.text and "residual_block(128, stride = 2)" in imported.text
    network = imported.model.build()
    network.load_arrays(imported.weights, str(path))
    network.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    assert relative_error(network.forward(x), expected) < TOLERANCE


# ---- torchvision's names for the other zoo models the issue names (no download: the names and
# shapes are written here from torchvision's module layout, the values are one constant per tensor)


def _sequential_names(graph, nodes) -> dict[str, str]:
    """AlexNet and VGG: ``features.i`` / ``classifier.i``, i counting every module in order."""
    names, prefix, index, seen_head = {}, "features", 0, False
    for node in nodes:
        op = graph.nodes[node]["op"]
        if not seen_head and op in ("fc", "dropout"):
            prefix, index, seen_head = "classifier", 0, True
        names[node] = f"{prefix}.{index}"
        index += 1
    return names


def _googlenet_names(graph, nodes) -> dict[str, str]:
    branches = {1: "branch1", 2: "branch2.0", 3: "branch2.1", 4: "branch3.0", 5: "branch3.1", 6: "branch4.1"}
    names = {}
    for node in nodes:
        parts = node.split("/")
        leaf = {"conv1": "conv", "batchnorm1": "bn"}.get(parts[-1], parts[-1])
        if parts[0].startswith("inception") and parts[1].startswith("basic_conv"):
            names[node] = f"{parts[0]}.{branches[int(parts[1].removeprefix('basic_conv'))]}.{leaf}"
        elif parts[0] == "fc1":
            names[node] = "fc"
        else:
            names[node] = f"{parts[0]}.{leaf}"
    return names


@pytest.mark.parametrize("name, naming, skip", [
    ("alexnet", _sequential_names, []),
    ("vgg16_bn", _sequential_names, []),
    ("googlenet", _googlenet_names, ["aux1", "aux2"]),
])
def test_torchvision_layouts_of_alexnet_vgg_and_googlenet(name, naming, skip):
    from cnnlang import ir

    model = reduced(name)
    graph = model.graph
    modules = naming(graph, [n for n in ir.layer_nodes(graph) if graph.nodes[n]["op"] != "concat"])
    state, expected = {}, {}
    for number, node in enumerate(ir.layer_nodes(graph)):
        data = graph.nodes[node]
        inputs = [graph.nodes[i]["shape"] for i in data["inputs"]]
        shapes = {**data["layer"].param_shapes(inputs), **data["layer"].buffer_shapes(inputs)}
        for slot, (leaf, shape) in enumerate(shapes.items()):
            value = np.full(shape, number * 10 + slot, np.float32)
            state[f"{modules[node]}.{TORCH_LEAVES.get(leaf, leaf)}"] = value
            expected[f"{node}.{leaf}"] = value
    for head in skip:  # GoogLeNet's auxiliary classifiers, which the zoo model leaves out
        state[f"{head}.conv.conv.weight"] = np.zeros((128, 512, 1, 1), np.float32)
        state[f"{head}.fc1.weight"] = np.zeros((1024, 2048), np.float32)
    _, weights = map_state_dict(model, state, skip)
    assert weights.keys() == expected.keys()
    for key, value in expected.items():
        assert weights[key][(0,) * value.ndim] == value[(0,) * value.ndim], key
