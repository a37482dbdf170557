"""cnnlang export: layer arguments, names, local functions, passes, weights and the command.
Every zoo model is exported (and imported back) in test_roundtrip.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx extra: pip install 'cnnlang[onnx]'")
pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (in the onnx extra)")
from interchange_compare import TOLERANCE, random_input, relative_error, run_onnx
from zoo_sizes import reduced

import cnnlang
from cnnlang.cli import main
from cnnlang.interchange import InterchangeError
from cnnlang.interchange.export import export_model, save_onnx


def cnnlang_output(model, x, **build):
    network = model.build(**build)
    network.eval()
    return network.forward(x)


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_functions_one_per_distinct_block_body_and_same_output(name):
    model = reduced(name)
    proto = export_model(model, functions=True)
    onnx.checker.check_model(proto, full_check=True)
    x = random_input(model.input_shape, batch=1)
    assert relative_error(run_onnx(proto, x), cnnlang_output(model, x)) < TOLERANCE
    calls = {n.name: n.op_type for n in proto.graph.node if n.domain == "cnnlang"}
    scopes = {"/".join(p): s for p, s in model.graph.graph["scopes"].items() if len(p) == 1}
    assert set(calls) == set(scopes)  # one call per top-level block instance, named by its path
    for function in proto.functions:
        assert re.sub(r"_\d+$", "", function.name) in {s.block for s in model.graph.graph["scopes"].values()}
        assert function.doc_string  # the call's signature, e.g. basic(128, stride=2)


def test_resnet_functions_share_bodies():
    proto = export_model(reduced("resnet18"), functions=True)
    # Eight basic blocks, two bodies: identity shortcut, and projection with stride 2.
    assert sorted(f.name for f in proto.functions) == ["basic", "basic_2"]
    assert [n.op_type for n in proto.graph.node if n.domain == "cnnlang"] == ["basic"] * 2 + ["basic_2", "basic"] * 3


AUX_INSIDE_BLOCK = """
block head(c) {
    t: conv(c, 3x3, pad = 1) -> relu
    from t -> globalavgpool -> fc(3)
    aux: softmax
    from t -> conv(c, 1x1)
}
network n {
    input 3x8x8
    head(4)
    conv(2, 1x1)
}
"""


def test_outputs_computed_inside_a_block_leave_its_function():
    model = cnnlang.load(AUX_INSIDE_BLOCK)
    proto = export_model(model, functions=True)
    onnx.checker.check_model(proto, full_check=True)
    x = random_input(model.input_shape, batch=1)
    network = model.build()
    network.eval()
    network.forward(x)
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    results = session.run(None, {"input": x})
    assert [o.name for o in proto.graph.output] == model.graph.graph["outputs"]
    for output, value in zip(proto.graph.output, results):
        assert relative_error(value, network.outputs()[output.name]) < TOLERANCE


def test_names_keep_cnnlang_names_with_the_block_path():
    model = reduced("resnet18")
    proto = export_model(model)
    initializers = {t.name for t in proto.graph.initializer}
    assert {"conv1.weight", "basic3/shortcut_conv1.weight", "basic3/batchnorm1.running_var", "fc1.bias"} <= initializers
    names = {n.name for n in proto.graph.node}
    assert {"basic3/conv1", "basic3/add1", "fc1"} <= names


def test_dynamic_batch_runs_any_batch():
    model = reduced("lenet5")
    proto = export_model(model, dynamic_batch=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    for batch in (1, 5):
        x = random_input(model.input_shape, batch=batch)
        assert relative_error(run_onnx(proto, x), cnnlang_output(model, x)) < TOLERANCE


@pytest.mark.parametrize("name", ["resnet18", "googlenet", "vgg16_bn"])
def test_passes_export_the_optimised_graph_with_the_same_output(name):
    model = reduced(name)
    proto = export_model(model, passes="all")
    onnx.checker.check_model(proto, full_check=True)
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # folded into the convs
    x = random_input(model.input_shape, batch=1)
    assert relative_error(run_onnx(proto, x), cnnlang_output(model, x)) < TOLERANCE


def test_weights_come_from_the_file(tmp_path):
    model = reduced("lenet5")
    trained = model.build(seed=7)
    trained.save(tmp_path / "w.safetensors")
    proto = export_model(model, weights=tmp_path / "w.safetensors")
    weight = next(t for t in proto.graph.initializer if t.name == "c1.weight")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weight), trained.params["c1.weight"])


SMALL = """
network small {
    input 3x17x17
    conv(8, 3x3, stride = 2, pad = 1, dilation = 2, groups = 1) -> relu
    a: conv(8, 3x3, pad = same, groups = 4, bias = false) -> batchnorm(eps = 0.001, affine = false) -> sigmoid
    avgpool(3x3, stride = 2, pad = 1, ceil = true, count_pad = false)
    maxpool(2x2, stride = 1, dilation = 2)
    lrn(size = 3, alpha = 0.001, beta = 0.5, k = 1.5)
    conv(8, 1x1) -> tanh
    from a -> globalavgpool -> fc(5) -> softmax
}
"""


def test_arguments_of_every_window_layer_reach_onnx_runtime():
    model = cnnlang.load(SMALL)
    proto = export_model(model, dynamic_batch=True)
    onnx.checker.check_model(proto, full_check=True)
    x = random_input(model.input_shape)
    network = model.build()
    network.eval()
    network.forward(x)
    expected = network.outputs()
    session_outputs = [o.name for o in proto.graph.output]
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for name, value in zip(session_outputs, session.run(None, {"input": x})):
        assert relative_error(value, expected[name]) < TOLERANCE, name


def test_even_lrn_and_bad_opset_are_refused():
    even = cnnlang.load("network n {\n input 4x5x5\n lrn(size = 4)\n}")
    with pytest.raises(InterchangeError, match="even size"):
        export_model(even)
    with pytest.raises(InterchangeError, match="--opset must be between 13"):
        export_model(reduced("lenet5"), opset=11)


def test_cli_writes_a_checked_file_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["export", "lenet5", "-o", str(out), "--functions", "--opset", "13"]) == 0
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 13
    before = out.read_bytes()
    assert main(["export", "lenet5", "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_save_checks_before_writing(tmp_path):
    proto = export_model(reduced("lenet5"))
    proto.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(onnx.checker.ValidationError):
        save_onnx(proto, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()
