"""docs/language.md's layer table is generated from the layer registry (cnnlang/layers/table.py):
this fails when the page is stale, and checks what the table promises against the binding."""

from __future__ import annotations

from pathlib import Path

from cnnlang.layers import LAYER_TYPES, REGISTRY
from cnnlang.layers.table import markdown_table, with_table

PAGE = Path(__file__).resolve().parents[2] / "docs" / "language.md"


def test_the_page_has_the_current_table():
    page = PAGE.read_text(encoding="utf-8")
    assert page == with_table(page), "docs/language.md is stale: run python -m cnnlang.layers.table docs/language.md"


def test_every_layer_type_has_a_row():
    rows = markdown_table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == [cls.op for cls in LAYER_TYPES]


def test_the_documented_positional_arguments_bind():
    # issue 11, defect 10: the page promised lrn(3, 0.001, 0.75, 1), which the layer refused.
    layer = REGISTRY["lrn"].bind([3, 0.001, 0.75, 1], {})
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (3, 0.001, 0.75, 1.0)
    # ... and listed dilation for avgpool, which it has not (PyTorch's AvgPool2d has none either).
    assert "dilation" not in REGISTRY["avgpool"].signature() and "dilation" in REGISTRY["maxpool"].signature()
