"""Every zoo model: export → ONNX checker → ONNX Runtime agrees with cnnlang → import → the same
parameter count, MACs and outputs (float32, 1e-5 relative); the re-imported ResNets, GoogLeNet
and VGGs are written with blocks, one summary row per block as in the zoo file.

The models run at the reduced input sizes of tests/zoo_sizes.py (published channels and depth,
smaller images), so the whole zoo stays cheap on CI's two cores; the VGGs still hold ~40 M
parameters each because of their 4096-wide classifier."""

from __future__ import annotations

import gc

import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX tests need the onnx extra: pip install 'cnnlang[onnx]'")
pytest.importorskip("onnxruntime", reason="the ONNX tests need onnxruntime (in the onnx extra)")
from interchange_compare import TOLERANCE, random_input, relative_error, run_onnx
from zoo_sizes import reduced

import cnnlang
from cnnlang.interchange.export import export_model
from cnnlang.interchange.importer import import_onnx
from cnnlang.report import rows

BLOCKED = ("resnet", "googlenet", "vgg")


@pytest.mark.parametrize("name", cnnlang.zoo_names())
def test_zoo_model_round_trip(name, tmp_path):
    model = reduced(name)
    proto = export_model(model, dynamic_batch=True)
    onnx.checker.check_model(proto, full_check=True)
    assert not any(n.op_type == "Dropout" for n in proto.graph.node)  # inference export
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, str(path))
    del proto
    x = random_input(model.input_shape)
    expected = run_onnx(path, x)
    original = model.build()
    original.eval()
    assert relative_error(original.forward(x), expected) < TOLERANCE
    del original
    gc.collect()

    imported = import_onnx(path)
    assert imported.structured
    assert imported.model.totals["params"] == model.totals["params"]
    assert imported.model.totals["macs"] == model.totals["macs"]
    network = imported.model.build()
    network.load_arrays(imported.weights, str(path))
    network.eval()
    assert relative_error(network.forward(x), expected) < TOLERANCE
    if name.startswith(BLOCKED):
        assert "block " in imported.text
        _assert_same_top_level_rows(model, imported.model)


def _assert_same_top_level_rows(zoo, imported):
    """``summary --depth 1``'s rows, compared by what they compute (output, parameters, MACs,
    whether a block): names differ (bottleneck3 / residual_block3) and dropout is not exported.
    The VGGs' classifier block has no repetition to recover, so it comes back as plain layers."""
    def facts(model):
        return [(r.shape, r.params, r.macs, r.is_block) for r in rows(model, 1)
                if not r.op.startswith("dropout")]

    ours, theirs = facts(zoo), facts(imported)
    if any(r.op.startswith("classifier") for r in rows(zoo, 1)):
        head = next(i for i, r in enumerate(rows(zoo, 1)) if r.op.startswith("classifier"))
        ours = ours[:head]
        theirs = theirs[:head]
    assert theirs == ours
    assert sum(r[3] for r in theirs) >= 3  # blocks, not a flat list
