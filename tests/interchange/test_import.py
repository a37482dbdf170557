"""cnnlang import on ONNX files built here with onnx.helper (no torch needed): each geometry
that ONNX can express and cnnlang can too gives ONNX Runtime's output; the rest is refused with
every reason at once; broken files get one clear line."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx extra: pip install 'cnnlang[onnx]'")
pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (in the onnx extra)")
from interchange_compare import TOLERANCE, random_input, relative_error, run_onnx

from cnnlang.cli import main
from cnnlang.interchange import InterchangeError, UnsupportedModel
from cnnlang.interchange.importer import import_onnx

helper, TensorProto = onnx.helper, onnx.TensorProto
RNG = np.random.default_rng(3)


def weight(*shape) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32) * 0.3


def build(tmp_path, nodes, initializers: dict, input_shape, rank=4, name="m.onnx", opset=17):
    graph = helper.make_graph(
        nodes, "built",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, *input_shape])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, [None] * rank)],
        [onnx.numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def imported_output(path, x):
    imported = import_onnx(path)
    network = imported.model.build()
    network.load_arrays(imported.weights, str(path))
    network.eval()
    return imported, network.forward(x)


def assert_same_as_onnx_runtime(path, input_shape):
    x = random_input(input_shape, batch=1)
    imported, ours = imported_output(path, x)
    assert relative_error(ours, run_onnx(path, x)) < TOLERANCE
    return imported


def conv(name, source, w, **attributes):
    return helper.make_node("Conv", [source, f"{name}.w"], [name], name=name, **attributes), {f"{name}.w": w}


def test_asymmetric_pads_that_same_gives_become_pad_same(tmp_path):
    node, inits = conv("c", "x", weight(4, 3, 2, 2), pads=[0, 0, 1, 1])
    imported = assert_same_as_onnx_runtime(build(tmp_path, [node], inits, (3, 8, 8)), (3, 8, 8))
    assert "conv(4, 2x2, pad = same, bias = false)" in imported.text


@pytest.mark.parametrize("size, text", [(8, "pad = same"), (9, "pad = 1")])
def test_auto_pad_same_upper(tmp_path, size, text):
    node, inits = conv("c", "x", weight(4, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2])
    imported = assert_same_as_onnx_runtime(build(tmp_path, [node], inits, (3, size, size)), (3, size, size))
    assert text in imported.text


def test_dilations_groups_and_bias(tmp_path):
    node = helper.make_node("Conv", ["x", "w", "b"], ["c"], dilations=[2, 2], group=2, pads=[2, 2, 2, 2], strides=[1, 2])
    path = build(tmp_path, [node], {"w": weight(6, 2, 3, 3), "b": weight(6)}, (4, 9, 9))
    imported = assert_same_as_onnx_runtime(path, (4, 9, 9))
    assert "conv(6, 3x3, stride = 1x2, pad = 2, dilation = 2, groups = 2)" in imported.text


def test_pools_with_ceil_mode_dilation_and_count_include_pad(tmp_path):
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, dilations=[1, 1]),
        helper.make_node("MaxPool", ["p"], ["q"], kernel_shape=[2, 2], dilations=[2, 2]),
        helper.make_node("AveragePool", ["q"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[2, 2], count_include_pad=1, pads=[1, 1, 1, 1]),
    ]
    imported = assert_same_as_onnx_runtime(build(tmp_path, nodes, {}, (2, 13, 13)), (2, 13, 13))
    assert "maxpool(3x3, stride = 2, pad = 1, ceil = true)" in imported.text
    assert "maxpool(2x2, stride = 1, dilation = 2)" in imported.text
    assert "avgpool(3x3, stride = 2, pad = 1, count_pad = false)" in imported.text
    assert "avgpool(2x2, stride = 1, pad = 1)" in imported.text


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_with_trans_b_alpha_and_beta(tmp_path, trans_b):
    w = weight(6, 5) if trans_b else weight(5, 6)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=trans_b, alpha=0.5, beta=2.0),
    ]
    imported = assert_same_as_onnx_runtime(build(tmp_path, nodes, {"w": w, "b": weight(6)}, (5, 1, 1), rank=2), (5, 1, 1))
    assert "fc(6)" in imported.text and "flatten" not in imported.text  # fc flattens by itself


def test_matmul_then_add_is_one_fc_and_softmax_lrn_concat_work(tmp_path):
    nodes = [
        helper.make_node("LRN", ["x"], ["l"], size=3, alpha=0.01, beta=0.5, bias=2.0),
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Concat", ["l", "r"], ["k"], axis=1),
        helper.make_node("GlobalAveragePool", ["k"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Softmax", ["a"], ["s"], axis=1),
    ]
    path = build(tmp_path, nodes, {"w": weight(8, 3), "b": weight(3)}, (4, 5, 5), rank=2)
    imported = assert_same_as_onnx_runtime(path, (4, 5, 5))
    assert "fc(3)" in imported.text and "lrn(size = 3, alpha = 0.01, beta = 0.5)" in imported.text
    assert "concat {" in imported.text


def test_a_graph_that_is_not_nested_branches_is_written_with_named_tensors(tmp_path):
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="first"),
        helper.make_node("Sigmoid", ["a"], ["b"], name="second"),
        helper.make_node("Tanh", ["x"], ["c"], name="third"),
        helper.make_node("Sum", ["a", "b", "c"], ["y"], name="sum"),
    ]
    imported = assert_same_as_onnx_runtime(build(tmp_path, nodes, {}, (3, 4, 4)), (3, 4, 4))
    assert not imported.structured
    assert "from first, second, third -> sum: add" in imported.text


def test_every_unsupported_node_is_listed_at_once(tmp_path, capsys):
    nodes = [
        helper.make_node("Erf", ["x"], ["e"], name="erf_node"),
        helper.make_node("Conv", ["e", "w"], ["c"], name="lopsided", pads=[1, 1, 0, 0]),
        helper.make_node("LeakyRelu", ["c"], ["y"], name="leaky"),
    ]
    path = build(tmp_path, nodes, {"w": weight(2, 2, 3, 3)}, (2, 6, 6))
    with pytest.raises(UnsupportedModel) as caught:
        import_onnx(path)
    message = str(caught.value)
    assert "3 node(s)" in message
    assert "Erf 'erf_node': no cnnlang layer" in message and "LeakyRelu 'leaky'" in message
    assert "Conv 'lopsided': padding [[1, 0], [1, 0]]" in message
    assert main(["import", str(path), "-o", str(tmp_path / "m.cnn")]) == 1
    assert "Erf 'erf_node'" in capsys.readouterr().err
    assert not (tmp_path / "m.cnn").exists()


@pytest.mark.parametrize("content", [b"", b"network x { input 3 }\n", b"\x08\x07\x12\x05bad"])
def test_broken_or_foreign_files_get_one_clear_line(tmp_path, capsys, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(InterchangeError, match="not an ONNX model file"):
        import_onnx(path)
    assert main(["import", str(path), "-o", str(tmp_path / "m.cnn")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_truncated_file(tmp_path, capsys):
    node, inits = conv("c", "x", weight(4, 3, 3, 3))
    path = build(tmp_path, [node], inits, (3, 8, 8))
    path.write_bytes(path.read_bytes()[:-40])
    assert main(["import", str(path), "-o", str(tmp_path / "m.cnn")]) == 2
    err = capsys.readouterr().err
    assert "not an ONNX model file" in err and err.count("\n") == 1


def test_weights_in_external_files_are_refused_not_followed(tmp_path):
    node, inits = conv("c", "x", weight(4, 3, 3, 3))
    path = build(tmp_path, [node], inits, (3, 8, 8))
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    with pytest.raises(InterchangeError, match="stored in other files"):
        import_onnx(path)


def test_cli_writes_model_and_weights_that_run_and_check(tmp_path, capsys):
    node, inits = conv("c", "x", weight(4, 3, 3, 3), pads=[1, 1, 1, 1])
    path = build(tmp_path, [node, helper.make_node("Relu", ["c"], ["y"])], inits, (3, 8, 8))
    out, weights = tmp_path / "m.cnn", tmp_path / "m.safetensors"
    assert main(["import", str(path), "-o", str(out), "--weights-out", str(weights)]) == 0
    assert main(["check", str(out)]) == 0
    import cnnlang

    network = cnnlang.load(out).build()
    network.load(weights)
    network.eval()
    x = random_input((3, 8, 8), batch=1)
    assert relative_error(network.forward(x), run_onnx(path, x)) < TOLERANCE
    assert main(["import", str(path), "-o", str(out)]) == 2  # never overwrites unasked
    assert "exists" in capsys.readouterr().err
