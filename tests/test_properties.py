"""Property tests: random conv/pool stacks against the size formulas, and random mutations of the
zoo that must compile or fail with a located diagnostic, never with another exception.

Set CNNLANG_PROPERTY_EXAMPLES to run more examples than the modest default.
"""

from __future__ import annotations

import math
import os
import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cnnlang
from cnnlang.resources import zoo_dir

EXAMPLES = int(os.environ.get("CNNLANG_PROPERTY_EXAMPLES", "0")) or None


def budget(default: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---- (a) random stacks against the formulas ------------------------------------------------


def conv_out(w: int, k: int, s: int, p: int, d: int) -> int:
    return math.floor((w + 2 * p - d * (k - 1) - 1) / s) + 1


def pool_out(w: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    span = w + 2 * p - d * (k - 1) - 1
    if not ceil:
        return math.floor(span / s) + 1
    out = math.ceil(span / s) + 1
    if (out - 1) * s >= w + p:  # PyTorch: the last window must start inside the input or left pad
        out -= 1
    return out


layer_strategy = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["conv", "conv", "maxpool", "avgpool"]),
        "filters": st.integers(1, 16),
        "kernel": st.tuples(st.integers(1, 7), st.integers(1, 7)),
        "stride": st.integers(1, 3),
        "pad": st.integers(0, 3),
        "dilation": st.integers(1, 2),
        "ceil": st.booleans(),
    }
)


def write_layer(index: int, layer: dict) -> str:
    if layer["op"] == "avgpool":
        layer["dilation"] = 1  # average pooling has no dilation (as in PyTorch)
    kh, kw = layer["kernel"]
    common = f"stride = {layer['stride']}, pad = {layer['pad']}"
    if layer["op"] != "avgpool":
        common += f", dilation = {layer['dilation']}"
    if layer["op"] == "conv":
        return f"l{index}: conv({layer['filters']}, {kh}x{kw}, {common})"
    return f"l{index}: {layer['op']}({kh}x{kw}, {common}, ceil = {'true' if layer['ceil'] else 'false'})"


def expected_shapes(shape: tuple[int, int, int], layers: list[dict]):
    """Shapes by the formulas; stops at the first failing layer, returning its index."""
    shapes = []
    for index, layer in enumerate(layers):
        kh, kw = layer["kernel"]
        s, p, d = layer["stride"], layer["pad"], layer["dilation"]
        if layer["op"] == "conv":
            size = (layer["filters"], conv_out(shape[1], kh, s, p, d), conv_out(shape[2], kw, s, p, d))
        else:
            if p > kh // 2 or p > kw // 2:
                return shapes, index, "more than half"
            size = (shape[0], pool_out(shape[1], kh, s, p, d, layer["ceil"]), pool_out(shape[2], kw, s, p, d, layer["ceil"]))
        if min(size[1:]) < 1:
            return shapes, index, "would be"
        shapes.append(size)
        shape = size
    return shapes, None, None


@budget(150)
@given(
    channels=st.integers(1, 8),
    height=st.integers(16, 128),
    width=st.integers(16, 128),
    layers=st.lists(layer_strategy, min_size=1, max_size=6),
)
def test_random_stacks_match_the_formulas(channels, height, width, layers):
    lines = [f"input {channels}x{height}x{width}"] + [write_layer(i, layer) for i, layer in enumerate(layers)]
    source = "network random {\n" + "\n".join(lines) + "\n}\n"
    expected, failing, reason = expected_shapes((channels, height, width), layers)

    model = cnnlang.load(source, keep_going=True)
    nodes = model.graph.nodes
    for index, shape in enumerate(expected):
        assert nodes[f"l{index}"]["shape"] == shape, (source, index)
    if failing is None:
        assert model.errors == []
        assert model.output_shape == expected[-1]
        return
    assert "shape" not in nodes[f"l{failing}"]
    assert "error" in nodes[f"l{failing}"]
    for later in range(failing + 1, len(layers)):
        assert "shape" not in nodes[f"l{later}"]
    try:
        cnnlang.load(source)
    except cnnlang.CnnError as error:
        assert reason in error.message
        assert error.span.line == failing + 3  # "network", "input", then one line per layer
        assert str(error).startswith(f"<string>:{failing + 3}:")
    else:
        raise AssertionError(f"expected a shape error at l{failing}:\n{source}")


@budget(60)
@given(
    length=st.integers(8, 200),
    layers=st.lists(
        st.tuples(st.sampled_from(["conv1d", "maxpool"]), st.integers(1, 7), st.integers(1, 3), st.integers(0, 3), st.integers(1, 2)),
        min_size=1,
        max_size=4,
    ),
)
def test_random_1d_stacks_match_the_formulas(length, layers):
    text, size = [], length
    for index, (op, k, s, p, d) in enumerate(layers):
        if op == "maxpool":
            p = min(p, k // 2)
            text.append(f"l{index}: maxpool({k}, stride = {s}, pad = {p}, dilation = {d})")
        else:
            text.append(f"l{index}: conv1d(5, {k}, stride = {s}, pad = {p}, dilation = {d})")
        size = conv_out(size, k, s, p, d)  # floor mode: the same rule for both
        assume(size >= 1)
    model = cnnlang.load("network n {\ninput 2x%d\n%s\n}" % (length, "\n".join(text)))
    channels = 5 if any(op == "conv1d" for op, *_ in layers) else 2
    assert model.output_shape == (channels, size)


# ---- (b) mutated zoo files -----------------------------------------------------------------

ZOO = {name: (zoo_dir() / f"{name}.cnn").read_text(encoding="utf-8") for name in cnnlang.zoo_names()}
TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:x\d+)*|[A-Za-z_]\w*|->|//|\S')
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:x\d+)*")
CHARS = '{}()[],;:=*/-+x0123456789 \n\t"#._aez>'
WORDS = [
    "block", "network", "input", "output", "residual", "shortcut", "auto", "identity", "concat", "branch",
    "repeat", "from", "import", "true", "false", "same", "valid", "conv", "relu", "add", "fc", "maxpool",
    "stride", "pad", "input", "x", "->", "*", "{", "}", "(", ")", ",", ";", "=", ":", '"resnet_blocks.cnn"',
]
NUMBERS = st.one_of(
    st.integers(0, 100).map(str),
    # No huge whole numbers: a repeat count of 10**20 builds a graph until memory runs out.
    st.sampled_from(["0.5", "2.5", "1e3", "1e999", "3x3", "1x1x1", "0x3", "1.0"]),
)
KINDS = [
    "delete_char", "insert_char", "duplicate_char", "replace_char",
    "delete_token", "duplicate_token", "replace_token", "swap_number",
    "drop_line", "duplicate_line", "swap_lines",
]


def mutate(text: str, data) -> str:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    if kind.endswith("_char"):
        if not text:
            return text
        at = data.draw(st.integers(0, len(text) - 1), label="at")
        if kind == "delete_char":
            return text[:at] + text[at + 1:]
        if kind == "duplicate_char":
            return text[:at] + text[at] + text[at:]
        char = data.draw(st.sampled_from(CHARS) | st.characters(codec="utf-8"), label="char")
        if kind == "insert_char":
            return text[:at] + char + text[at:]
        return text[:at] + char + text[at + 1:]
    if kind == "swap_number":
        numbers = list(NUMBER.finditer(text))
        if not numbers:
            return text
        match = data.draw(st.sampled_from(numbers), label="number")
        return text[: match.start()] + data.draw(NUMBERS, label="new") + text[match.end():]
    if kind.endswith("_token"):
        tokens = [m for m in TOKEN.finditer(text) if not m.group().startswith("#")]
        if not tokens:
            return text
        match = data.draw(st.sampled_from(tokens), label="token")
        if kind == "delete_token":
            new = ""
        elif kind == "duplicate_token":
            new = match.group() + " " + match.group()
        else:
            new = data.draw(st.sampled_from(WORDS + [t.group() for t in tokens]), label="new")
        return text[: match.start()] + new + text[match.end():]
    lines = text.split("\n")
    at = data.draw(st.integers(0, len(lines) - 1), label="line")
    if kind == "drop_line":
        del lines[at]
    elif kind == "duplicate_line":
        lines.insert(at, lines[at])
    elif at + 1 < len(lines):
        lines[at], lines[at + 1] = lines[at + 1], lines[at]
    return "\n".join(lines)


DIAGNOSTIC = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): error: \S")


def check_diagnostic(error: cnnlang.CnnError, text: str) -> None:
    rendered = str(error)
    first = rendered.splitlines()[0]
    match = DIAGNOSTIC.match(first)
    assert match, f"not a located diagnostic: {rendered!r}"
    line, column = int(match["line"]), int(match["column"])
    assert line >= 1 and column >= 1
    if match["file"] == "<string>":
        assert line <= len(text.splitlines()) + 1, rendered
        return
    # An error inside a block imported from the zoo is located in that file (named zoo:NAME.cnn),
    # and a note then points back at the call in the text.
    file = match["file"]
    assert file.startswith("zoo:") and file.endswith(".cnn") and (zoo_dir() / file[4:]).is_file(), rendered
    assert re.search(r"^<string>:\d+:\d+: note: ", rendered, re.M), rendered


@budget(300)
@given(name=st.sampled_from(sorted(ZOO)), data=st.data())
def test_mutated_zoo_files_compile_or_fail_with_a_diagnostic(name, data):
    text = ZOO[name]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = mutate(text, data)
    assume("{" in text)  # without a brace, load() takes the text for a path or a zoo name
    for keep_going in (False, True):
        try:
            model = cnnlang.load(text, keep_going=keep_going)
        except cnnlang.CnnError as error:
            check_diagnostic(error, text)
            for other in error.others:
                check_diagnostic(other, text)
        else:
            for error in model.errors:
                check_diagnostic(error, text)
            if not keep_going:
                assert model.errors == []


def test_the_unmutated_zoo_compiles():
    assert "lenet5" in ZOO
    for name, text in ZOO.items():
        assert cnnlang.load(text).errors == [], name


# ---- (c) random structured programs --------------------------------------------------------

LAYERS = [
    "conv({c}, ({k}, {k}), stride = {s}, pad = {p})",
    "conv({c}, {k}, pad = same, dilation = {d})",
    "conv({c}, 1x1, groups = {g}, bias = false)",
    "conv1d({c}, {k})",
    "maxpool({k}, stride = {s}, pad = {p}, ceil = true)",
    "avgpool({k})",
    "globalavgpool",
    "fc({c})",
    "flatten",
    "relu",
    "batchnorm",
    "dropout(0.5)",
    "lrn(size = {k})",
    "softmax",
    "add",
    "concat",
]


class ProgramWriter:
    """Draws a random .cnn program: blocks, labels, from, residuals, concat, repeat, outputs."""

    def __init__(self, data):
        self.data = data
        self.counter = 0

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def number(self, params, choices):
        options = [str(n) for n in choices]
        if params:
            options += list(params) + [f"{params[0]} * 2", f"{params[0]} // 2", f"{params[0]} / 2", f"{params[0]} + 1"]
        return self.draw(st.sampled_from(options))

    def layer(self, params):
        template = self.draw(st.sampled_from(LAYERS))
        return template.format(
            c=self.number(params, [1, 4, 8, 16]),
            k=self.number(params, [1, 2, 3, 5]),
            s=self.number(params, [1, 2]),
            p=self.number(params, [0, 1, 2]),
            d=self.number(params, [1, 2]),
            g=self.number(params, [1, 2, 4]),
        )

    def unit(self, depth, labels, params, blocks):
        kinds = ["layer"] * 4 + (["block"] if blocks else [])
        if depth < 2:
            kinds += ["residual", "concat", "repeat"]
        kind = self.draw(st.sampled_from(kinds))
        if kind == "layer":
            text = self.layer(params)
            if self.draw(st.integers(0, 5)) == 0 and text != "concat":
                text += f" * ({self.number(params, [0, 1, 2])})"
            return text
        if kind == "block":
            name, arity = self.draw(st.sampled_from(blocks))
            args = [self.number(params, [1, 2, 8, 16]) for _ in range(self.draw(st.integers(max(arity - 1, 0), arity + 1)))]
            text = f"{name}({', '.join(args)})"
            if self.draw(st.booleans()):
                text += f" * ({self.number(params, [0, 1, 2])})"
            return text
        if kind == "residual":
            shortcut = self.draw(st.sampled_from(["", " shortcut auto", " shortcut identity", " shortcut {SC}"]))
            if "{SC}" in shortcut:
                shortcut = " shortcut { " + self.body(depth + 1, labels, params, blocks) + " }"
            return "residual { " + self.body(depth + 1, labels, params, blocks) + " }" + shortcut
        if kind == "concat":
            branches = [self.body(depth + 1, labels, params, blocks) for _ in range(self.draw(st.integers(1, 2)))]
            return "concat { " + " ".join("branch { " + b + " }" for b in branches) + " }"
        return f"repeat {self.number(params, [0, 1, 2])} {{ " + self.body(depth + 1, labels, params, blocks) + " }"

    def statement(self, depth, labels, params, blocks):
        roll = self.draw(st.integers(0, 9))
        if roll == 0 and labels:
            names = self.draw(st.lists(st.sampled_from(labels), min_size=1, max_size=3))
            return "output " + ", ".join(names)
        prefix = ""
        if roll in (1, 2) and labels:
            names = self.draw(st.lists(st.sampled_from(labels + ["input", "nowhere"]), min_size=1, max_size=3))
            prefix = "from " + ", ".join(names) + " -> "
        items = []
        for _ in range(self.draw(st.integers(1, 2))):
            unit = self.unit(depth, labels, params, blocks)
            if self.draw(st.integers(0, 3)) == 0:
                self.counter += 1
                label = f"t{self.counter}" if self.draw(st.integers(0, 9)) else (labels[0] if labels else "t0")
                labels.append(label)
                unit = f"{label}: {unit}"
            items.append(unit)
        return prefix + " -> ".join(items)

    def body(self, depth, labels, params, blocks):
        count = self.draw(st.integers(0, 2) if depth else st.integers(1, 4))
        return " ; ".join(self.statement(depth, labels, params, blocks) for _ in range(count))

    def program(self) -> str:
        blocks: list[tuple[str, int]] = []
        lines = []
        for index in range(self.draw(st.integers(0, 2))):
            params = ["c", "s"][: self.draw(st.integers(0, 2))]
            name = f"b{index}"
            callable_ = blocks + ([(name, len(params))] if self.draw(st.integers(0, 9)) == 0 else [])  # rarely recursive
            signature = ", ".join(p if i == 0 else f"{p} = 1" for i, p in enumerate(params))
            lines.append(f"block {name}({signature}) {{\n  {self.body(0, [], params, callable_)}\n}}")
            blocks.append((name, len(params)))
        shape = self.draw(st.sampled_from(["3x32x32", "8x16x16", "4x7x9", "2x40", "16", "3x2x2"]))
        lines.append(f"network random {{\n  input {shape}\n  {self.body(0, [], [], blocks)}\n}}")
        return "\n".join(lines) + "\n"


@budget(200)
@given(data=st.data())
def test_random_programs_compile_or_fail_with_a_diagnostic(data):
    text = ProgramWriter(data).program()
    for keep_going in (False, True):
        try:
            model = cnnlang.load(text, keep_going=keep_going)
        except cnnlang.CnnError as error:
            rendered = str(error)
            assert rendered.startswith("<string>:"), rendered
            check_diagnostic(error, text)
            for other in error.others:
                check_diagnostic(other, text)
        else:
            assert model.graph.graph["outputs"]
            for node in model.graph.graph["outputs"]:
                assert node in model.graph
            for error in model.errors:
                check_diagnostic(error, text)
