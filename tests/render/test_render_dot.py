"""DOT output of `cnnlang.render`: it parses, and its nodes, edges and clusters match the IR at
each folding depth; runs of identical blocks fold; a golden file pins lenet5's exact text."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cnnlang import load
from cnnlang.render import RenderError, to_dot
from cnnlang.resources import zoo_dir

GOLDEN = Path(__file__).parent / "golden"

BLOCKS = """
from "resnet_blocks.cnn" import basic    # the zoo's ResNet basic block
block incep(a, b) {
    concat {
        branch { conv(a, 1x1) -> relu }
        branch { conv(b, 1x1) -> relu -> conv(b, 3x3, pad = 1) -> relu }
        branch { maxpool(3x3, stride = 1, pad = 1) -> conv(a, 1x1) }
    }
}
block stage(c, n) {
    basic(c, stride = 2)
    basic(c) * n
}
"""

# Four top-level residual blocks: the first two identical (one run), then two different ones.
RESIDUAL = BLOCKS + """
network residual4 {
    input 3x32x32
    conv(16, 3x3, pad = 1) -> batchnorm -> relu
    basic(16) * 2
    basic(32, stride = 2)
    basic(32)
    globalavgpool -> flatten -> fc(10)
}
"""

# Blocks inside blocks, a labelled module with parallel branches, and no identical neighbours.
NESTED = BLOCKS + """
network nested {
    input 3x32x32
    stem: conv(16, 3x3, pad = 1) -> relu
    stage(32, 1)
    mixed: incep(8, 16)
    stage(64, 1)
    globalavgpool -> flatten -> fc(10)
}
"""

BROKEN = """
network broken {
    input 3x8x8
    a: conv(8, 3x3)
    concat {
        branch { conv(4, 1x1) }
        branch { maxpool(2x2) }
    }
    fc(10)
}
"""


# ---- a small reader for the DOT that cnnlang writes (one statement per line) -----------------

_ID = r'"(?:[^"\\]|\\.)*"'
_NODE = re.compile(rf"^\s*({_ID}) \[(.*)\];$")
_EDGE = re.compile(rf"^\s*({_ID}) -> ({_ID}) \[(.*)\];$")
_RANK = re.compile(r"^\s*\{ rank=same; (.*) \[style=\"invis\"\]; \}$")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _attributes(text: str) -> dict[str, str]:
    """``key="value", key=<html <B>label</B>>`` → dict (HTML values keep their markup)."""
    out, i = {}, 0
    while i < len(text):
        j = text.index("=", i)
        key = text[i:j]
        i = j + 1
        if text[i] == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out[key] = _unquote(text[i:j + 1])
            i = j + 1
        else:
            assert text[i] == "<", text[i:]
            depth, j = 0, i
            while True:
                depth += {"<": 1, ">": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out[key] = text[i + 1:j - 1]
            i = j
        assert text[i:i + 2] in (", ", ""), text[i:]
        i += 2
    return out


def parse(text: str) -> dict:
    """Nodes (id → attrs), visible edges, invisible rank edges, clusters (label, parent, nodes)."""
    lines = text.splitlines()
    assert lines[0].startswith("digraph ") and lines[0].endswith("{") and lines[-1] == "}"
    nodes, edges, invisible, ranks, clusters, stack = {}, [], [], [], [], []
    for line in lines[1:-1]:
        stripped = line.strip()
        if stripped.startswith("subgraph "):
            clusters.append({"label": None, "parent": stack[-1] if stack else None, "nodes": []})
            stack.append(len(clusters) - 1)
        elif stripped == "}":
            stack.pop()
        elif stripped.startswith("graph [") and stack:
            clusters[stack[-1]]["label"] = _attributes(stripped[len("graph ["):-2])["label"]
        elif stripped.startswith(("graph [", "node [", "edge [")):
            _attributes(stripped[stripped.index("[") + 1:-2])
        elif m := _RANK.match(line):
            members = [_unquote(x) for x in m.group(1).split(" -> ")]
            ranks.append(members)
            invisible += list(zip(members, members[1:]))
        elif m := _EDGE.match(line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _attributes(m.group(3))))
        elif m := _NODE.match(line):
            node = _unquote(m.group(1))
            assert node not in nodes, f"node {node} declared twice"
            nodes[node] = _attributes(m.group(2))
            if stack:
                clusters[stack[-1]]["nodes"].append(node)
        else:
            raise AssertionError(f"unexpected DOT line: {line!r}")
    assert not stack
    for source, target, _ in edges:
        assert source in nodes and target in nodes, (source, target)
    return {"nodes": nodes, "edges": edges, "ranks": ranks, "clusters": clusters, "invisible": invisible}


def text_of(html: str) -> str:
    return re.sub(r"<[^>]*>", " ", html).replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")


def ir_edges(graph) -> set[tuple[str, str]]:
    return set(graph.edges)


def expected_folding(graph, depth: int):
    """Drawn node of each IR node at ``depth``, before runs of identical blocks merge."""
    return {n: ("/".join(d["path"][:depth]) if len(d["path"]) >= depth else n) for n, d in graph.nodes(data=True)}


# ---- structure against the IR ---------------------------------------------------------------


@pytest.mark.parametrize("source", [RESIDUAL, NESTED, "lenet5"], ids=["residual", "nested", "lenet5"])
def test_full_diagram_has_every_layer_and_tensor(source):
    model = load(source)
    graph = model.graph
    dot = parse(to_dot(model))
    outputs = graph.graph["outputs"]
    assert set(dot["nodes"]) == set(graph.nodes) | {"@output"}
    assert {(s, t) for s, t, _ in dot["edges"]} == ir_edges(graph) | {(outputs[0], "@output")}
    assert len(dot["edges"]) == graph.number_of_edges() + len(outputs)
    for source_, target, attrs in dot["edges"]:
        shape = graph.nodes[source_]["shape"]
        assert attrs["label"] == "x".join(map(str, shape))  # edges carry tensor shapes
    # One cluster per block instance, labelled with its call, holding exactly its layers.
    scopes = graph.graph["scopes"]
    assert len(dot["clusters"]) == len(scopes)
    for index, cluster in enumerate(dot["clusters"]):
        inside = list(cluster["nodes"])
        for other in dot["clusters"][index + 1:]:  # nested clusters follow their parent
            parent = other["parent"]
            while parent is not None and parent != index:
                parent = dot["clusters"][parent]["parent"]
            if parent == index:
                inside += other["nodes"]
        paths = [graph.nodes[n]["path"] for n in inside]
        path = paths[0][: min(map(len, paths))]
        while any(p[: len(path)] != path for p in paths):
            path = path[:-1]
        assert all(p[: len(path)] == path for p in paths) and path
        assert all(p == path for p in (graph.nodes[n]["path"] for n in cluster["nodes"]))
        assert scopes[path].signature in text_of(cluster["label"])


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_folded_diagram_matches_ir(depth):
    model = load(NESTED)  # no two identical neighbouring blocks: folding alone decides the nodes
    graph = model.graph
    owner = expected_folding(graph, depth)
    dot = parse(to_dot(model, depth=depth))
    assert set(dot["nodes"]) == set(owner.values()) | {"@output"}
    expected = {(owner[u], owner[v]) for u, v in graph.edges if owner[u] != owner[v]}
    assert {(s, t) for s, t, _ in dot["edges"]} == expected | {(owner[graph.graph["outputs"][0]], "@output")}
    assert len(dot["edges"]) == len(expected) + 1
    for cluster in dot["clusters"]:  # only scopes shallower than the depth stay clusters
        assert all(len(graph.nodes[n]["path"]) < depth if n in graph else n.count("/") < depth
                   for n in cluster["nodes"])


def test_depth_one_has_top_level_layers_and_one_node_per_block():
    model = load(NESTED)
    dot = parse(to_dot(model, depth=1))
    top = [n for n, d in model.graph.nodes(data=True) if not d["path"]]
    blocks = [p for p in model.graph.graph["scopes"] if len(p) == 1]
    assert len(dot["nodes"]) == len(top) + len(blocks) + 1
    assert dot["clusters"] == []
    labels = {n: text_of(a["label"]) for n, a in dot["nodes"].items()}
    assert "stage(32, 1)" in labels["stage1"] and "32x16x16" in labels["stage1"]
    assert "mixed" in labels["mixed"] and "incep(8, 16)" in labels["mixed"]
    assert "16x32x32 → 32x16x16" in labels["stage1"] and "params" in labels["stage1"]


def test_identical_neighbouring_blocks_fold_into_one_run():
    model = load(RESIDUAL)
    dot = parse(to_dot(model, depth=1))
    labels = {n: text_of(a["label"]) for n, a in dot["nodes"].items()}
    folded = [n for n, a in dot["nodes"].items() if a.get("shape") == "box3d"]
    # basic(16) * 2 is one run; basic(32, stride=2) and basic(32) differ, so stay apart.
    assert folded == ["basic1", "basic3", "basic4"]
    assert "basic(16) × 2" in labels["basic1"] and "basic1 … basic2" in labels["basic1"]
    assert "basic(32, stride=2)" in labels["basic3"] and "×" not in labels["basic3"]
    top = [n for n, d in model.graph.nodes(data=True) if not d["path"]]
    assert len(dot["nodes"]) == len(top) + 3 + 1
    params = sum(model.graph.nodes[n]["params"] for n in model.graph if model.graph.nodes[n]["path"][:1] in
                 {("basic1",), ("basic2",)})
    assert f"{params / 1e3:.2f} k params" in labels["basic1"]
    chain = [(s, t) for s, t, _ in dot["edges"]]
    assert ("relu1", "basic1") in chain and ("basic1", "basic3") in chain and ("basic3", "basic4") in chain


def test_blocks_that_feed_something_else_do_not_fold_together():
    model = load(BLOCKS + """
network skip {
    input 16x8x8
    a: basic(16)
    b: basic(16)
    from a, b -> add
}
""")
    dot = parse(to_dot(model, depth=1))
    assert {"a", "b"} <= set(dot["nodes"])  # a feeds the add too, so a and b stay two nodes


@pytest.mark.skipif(not (zoo_dir() / "resnet50.cnn").is_file(), reason="zoo/resnet50.cnn not written yet")
def test_resnet50_depth_one_is_the_stem_and_one_node_per_stage_run():
    model = load("resnet50")
    dot = parse(to_dot(model, depth=1))
    top = [n for n, d in model.graph.nodes(data=True) if not d["path"]]
    folded = [text_of(a["label"]) for a in dot["nodes"].values() if a.get("shape") == "box3d"]
    heads = [label.split("  ")[0].strip() for label in folded]
    assert heads == ["bottleneck(64) × 3", "bottleneck(128, stride=2)", "bottleneck(128) × 3",
                     "bottleneck(256, stride=2)", "bottleneck(256) × 5", "bottleneck(512, stride=2)",
                     "bottleneck(512) × 2"]
    assert len(dot["nodes"]) == len(top) + 7 + 1
    assert len(dot["edges"]) == len(dot["nodes"]) - 1  # one chain


@pytest.mark.skipif(not (zoo_dir() / "googlenet.cnn").is_file(), reason="zoo/googlenet.cnn not written yet")
def test_googlenet_depth_one_and_two():
    model = load("googlenet")
    graph = model.graph
    one = parse(to_dot(model, depth=1))
    assert set(one["nodes"]) == set(expected_folding(graph, 1).values()) | {"@output"}
    assert "inception3a" in one["nodes"]
    two = parse(to_dot(model, depth=2))
    # Each inception module is a cluster whose four branches start side by side.
    inceptions = [p for p in graph.graph["scopes"] if p[0].startswith("inception") and len(p) == 1]
    assert len([r for r in two["ranks"] if len(r) == 4]) == len(inceptions) == 9


# ---- drawing conventions --------------------------------------------------------------------


def test_parallel_branches_start_on_one_rank_in_source_order():
    dot = parse(to_dot(load(NESTED)))
    assert ["mixed/conv1", "mixed/conv2", "mixed/maxpool1"] in dot["ranks"]


def test_residual_shortcuts_are_dashed_bypasses():
    model = load(RESIDUAL)
    dot = parse(to_dot(model))
    dashed = {(s, t) for s, t, a in dot["edges"] if a.get("style") == "dashed"}
    # identity shortcut: the block input straight into the add
    assert ("relu1", "basic1/add1") in dashed
    # projection shortcut: input -> 1x1 conv -> batchnorm -> add, beside the body
    assert {("basic2/relu2", "basic3/shortcut_conv1"), ("basic3/shortcut_conv1", "basic3/shortcut_bn1"),
            ("basic3/shortcut_bn1", "basic3/add1")} <= dashed
    assert ("basic3/batchnorm2", "basic3/add1") not in dashed
    assert ["basic3/conv1", "basic3/shortcut_conv1"] in dot["ranks"]
    text = to_dot(model)
    assert "residual shortcut" in text and text.count('style="dashed"') == len(dashed) == 6


def test_colours_follow_the_kind_of_operation():
    dot = parse(to_dot(load("lenet5")))
    fill = {n: a["fillcolor"] for n, a in dot["nodes"].items()}
    assert fill["c1"] == fill["c3"] == fill["c5"]
    assert fill["s2"] == fill["s4"] != fill["c1"]
    assert fill["f6"] == fill["out"] != fill["c1"]
    assert fill["tanh1"] != fill["c1"] and fill["input"] == fill["@output"]
    assert len({fill["c1"], fill["s2"], fill["f6"], fill["tanh1"], fill["flatten1"], fill["input"]}) == 6


def test_labels_show_name_operation_and_shape():
    dot = parse(to_dot(load("lenet5")))
    assert text_of(dot["nodes"]["c1"]["label"]).split() == ["c1", "conv", "5x5,", "6", "6x28x28"]
    assert text_of(dot["nodes"]["s2"]["label"]).split() == ["s2", "avgpool", "2x2,", "/2", "6x14x14"]


def test_an_optimised_diagram_says_where_outputs_go():
    from cnnlang.model import Model
    from cnnlang.passes.optimise import optimise

    model = load("network n { input 16x8x8\n d: conv(16, 3x3, pad = 1, groups = 16) -> relu\n p: conv(8, 1x1) -> relu\n"
                 " concat { branch { conv(4, 1x1) } branch { relu } } }")
    dot = parse(to_dot(Model(optimise(model.graph), model.source)))
    assert text_of(dot["nodes"]["d"]["label"]).split()[-4:] == ["16x8x8", "(computed", "inside", "p)"]
    assert text_of(dot["nodes"]["conv1"]["label"]).split()[-3:] == ["4x8x8", "→", "concat1[0:4]"]


def test_rankdir_and_legend_options():
    model = load("lenet5")
    assert 'rankdir="LR"' in to_dot(model, rankdir="LR")
    assert "Legend" not in to_dot(model) and "convolution" in to_dot(model)
    assert "convolution" not in to_dot(model, legend=False)
    with pytest.raises(RenderError):
        to_dot(model, rankdir="BT")


def test_highlight_by_layer_block_or_folded_name():
    model = load(RESIDUAL)
    dot = parse(to_dot(model, highlight=["basic3/conv1"]))
    assert dot["nodes"]["basic3/conv1"]["penwidth"] == "4"
    assert sum(a.get("penwidth") == "4" for a in dot["nodes"].values()) == 1
    folded = parse(to_dot(model, depth=1, highlight=["basic2/conv1"]))  # inside the run basic1..basic2
    assert folded["nodes"]["basic1"]["penwidth"] == "4"
    cluster = to_dot(model, highlight=["basic4"])
    assert cluster.count('penwidth="3"') == 1
    with pytest.raises(RenderError, match=r"close names: .*basic3"):
        to_dot(model, highlight=["basic33"])
    with pytest.raises(RenderError, match="several layers"):
        to_dot(model, highlight=["conv2"])


def test_broken_model_is_drawn_up_to_the_error():
    model = load(BROKEN, keep_going=True)
    dot = parse(to_dot(model))
    failing = dot["nodes"]["concat1"]
    assert failing["color"] == "#c0392b"
    assert "'conv1' is 4x6x6 but" in text_of(failing["label"])
    assert "dashed" in dot["nodes"]["fc1"]["style"]  # after the error: no shape
    assert "a" in dot["nodes"] and "6x6" in text_of(dot["nodes"]["a"]["label"])


def test_dot_is_deterministic():
    first = to_dot(load(NESTED), depth=2)
    assert to_dot(load(NESTED), depth=2) == first


def test_lenet5_matches_the_golden_file():
    text = to_dot(load("lenet5"))
    golden = GOLDEN / "lenet5.dot"
    if os.environ.get("CNNLANG_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
@pytest.mark.parametrize("source,depth", [("lenet5", None), (RESIDUAL, None), (RESIDUAL, 1), (NESTED, 2)],
                         ids=["lenet5", "residual", "residual-depth1", "nested-depth2"])
def test_graphviz_parses_the_dot(source, depth):
    text = to_dot(load(source), depth=depth)
    result = subprocess.run(["dot", "-Tcanon"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0 and not result.stderr, result.stderr.decode()


def test_hand_written_add_and_several_outputs():
    model = load("""
network twin {
    input 4x8x8
    head: conv(4, 1x1)
    from head -> more: conv(4, 1x1)
    from head, more -> add
    side: globalavgpool
    output side, head
}
""")
    dot = parse(to_dot(model))
    dashed = {(s, t) for s, t, a in dot["edges"] if a.get("style") == "dashed"}
    assert dashed == {("head", "add1")}  # the tensor that is added back is the bypass
    assert "side" in text_of(dot["nodes"]["@output"]["label"])
    assert "head" in text_of(dot["nodes"]["@output2"]["label"])
    assert ("head", "@output2") in {(s, t) for s, t, _ in dot["edges"]}


def test_an_empty_branch_keeps_the_others_side_by_side():
    model = load("""
network skipcat {
    input 4x8x8
    stem: conv(4, 1x1)
    concat {
        branch { }
        branch { conv(4, 1x1) -> relu }
        branch { conv(4, 3x3, pad = 1) }
    }
}
""")
    dot = parse(to_dot(model))
    assert ["conv1", "conv2"] in dot["ranks"]
