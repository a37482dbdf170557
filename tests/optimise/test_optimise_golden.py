"""Golden IR text of small models before and after each optimisation pass (run in pipeline
order, each on top of the ones before it). Regenerate with CNNLANG_UPDATE_GOLDEN=1, then read the
diff: the files are the reviewed record of what each pass does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import cnnlang
from cnnlang import ir
from cnnlang.passes.optimise import PASS_NAMES, optimise

GOLDEN = Path(__file__).parent / "golden"

MODELS = {
    # conv -> batchnorm -> activation twice (one conv without bias, one with); then a batchnorm after
    # pooling, which cannot fold and, like the sigmoid after it, runs in place.
    "chain": """
network chain {
    input 3x8x8
    conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
    conv(4, 3x3, pad = 1) -> batchnorm -> tanh
    maxpool(2x2) -> batchnorm -> sigmoid
    globalavgpool
    fc(2)
}
""",
    # A residual block whose final relu fuses into the add.
    "residual": """
network residual {
    input 4x8x8
    stem: conv(4, 3x3, pad = 1) -> relu
    residual {
        conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
        conv(4, 3x3, pad = 1, bias = false) -> batchnorm
    }
    relu
    globalavgpool
    fc(3)
}
""",
    # Bottleneck blocks: the add runs in the epilogue of the last 1x1 conv (fuse-residual), which
    # moves to the add's place when the shortcut is a projection conv written after it.
    "bottleneck": """
network bottleneck {
    input 8x6x6
    stem: conv(8, 3x3, pad = 1) -> relu
    residual {
        conv(4, 1x1, bias = false) -> batchnorm -> relu
        conv(4, 3x3, pad = 1, bias = false) -> batchnorm -> relu
        conv(8, 1x1, bias = false) -> batchnorm
    }
    relu
    residual {
        conv(4, 1x1, bias = false) -> batchnorm -> relu
        conv(16, 1x1, bias = false) -> batchnorm
    } shortcut auto
    relu
    globalavgpool
    fc(3)
}
""",
    # An inception-like concat: conv branches, a pooling branch and a relu straight on the stem
    # (which has four consumers, so the relu neither fuses nor runs in place).
    "inception": """
network inception {
    input 4x8x8
    stem: conv(8, 1x1) -> relu
    concat {
        branch { conv(4, 1x1) -> relu }
        branch { conv(2, 1x1) -> relu -> conv(4, 3x3, pad = 1) -> relu }
        branch { maxpool(3x3, stride = 1, pad = 1) }
        branch { relu }
    }
    conv(4, 1x1)
}
""",
    # Convolutions the winograd pass marks (3x3, stride 1, at least 64 channels in and out, with
    # or without padding) and declines (too few channels, dilation, groups, 1x1, stride 2).
    "algorithms": """
network algorithms {
    input 3x8x8
    conv(64, 3x3, pad = 1) -> batchnorm -> relu
    conv(64, 3x3, pad = 1) -> batchnorm -> relu
    conv(64, 3x3, dilation = 2, pad = 2)
    conv(64, 3x3, pad = 1, groups = 2)
    conv(64, 3x3) -> relu
    conv(64, 1x1)
    conv(64, 3x3, stride = 2, pad = 1)
    conv(64, 3x3, pad = 1)
}
""",
    # Depthwise-separable blocks: the first depthwise conv (batchnorm and relu folded and fused into
    # it) runs inside the 1x1 conv after it; the others are declined: 8 channels, a 5x5 kernel, a
    # reader that is not a conv, a channel multiplier of 2, a 1x1 reader with a residual.
    "separable": """
network separable {
    input 16x8x8
    conv(16, 3x3, pad = 1, groups = 16, bias = false) -> batchnorm -> relu
    conv(8, 1x1, bias = false) -> batchnorm -> relu
    conv(8, 3x3, pad = 1, groups = 8) -> relu
    conv(16, 1x1) -> relu
    conv(16, 5x5, pad = 2, groups = 16)
    conv(16, 1x1)
    conv(16, 3x3, stride = 2, pad = 1, groups = 16) -> relu
    maxpool(2x2)
    conv(32, 3x3, pad = 1, groups = 16)
    conv(16, 1x1)
    residual {
        conv(16, 3x3, pad = 1, groups = 16)
        conv(16, 1x1)
    }
}
""",
    # Dropout to remove, and a head that the declared output does not need.
    "heads": """
network heads {
    input 8
    fc(16) -> relu
    h: dropout(p = 0.5)
    side: fc(4) -> sigmoid
    from h -> main: fc(3)
    output main
}
""",
}


def stages(source: str) -> str:
    """The IR before any pass and after each pass in turn."""
    graph = cnnlang.load(source).graph
    parts = ["=== before", ir.dump(graph)]
    for count, name in enumerate(PASS_NAMES, start=1):
        parts += [f"=== after {name}", ir.dump(optimise(graph, PASS_NAMES[:count]))]
    return "\n".join(parts) + "\n"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_golden_ir_after_each_pass(name):
    path = GOLDEN / f"{name}.ir"
    text = stages(MODELS[name])
    if os.environ.get("CNNLANG_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")
