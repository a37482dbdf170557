"""What every layer type declares, and how DSL arguments bind to it.

A layer type is a frozen dataclass: its fields are the DSL arguments (in positional order),
declared with :func:`arg` so that binding can check and convert each value and point at the
offending argument. The class also gives the shape rule, the parameter and buffer shapes (counts
are derived from them, never written twice), the multiply-accumulate count, the window used for
receptive fields, its initialisation rule, its fusion category, a plain-NumPy reference forward
and backward (the oracle every backend's kernels are tested against), its PyTorch twin for the
differential tests, and its row in docs/language.md. A concrete subclass (one that sets ``op``)
registers itself: adding a layer is one class.

NumPy and torch are imported inside the methods that need them, so ``cnnlang check`` loads
neither. (Longer than most modules, ~370 lines, because it is the whole contract a layer type
fulfils, argument kinds included: a contributor adding a layer reads this one file.)
"""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Sequence

Shape = tuple[int, ...]
#: Every concrete layer type, in definition order (see ``LayerType.__init_subclass__``).
DEFINED: list[type["LayerType"]] = []


class ShapeError(Exception):
    """A shape rule failed. ``mismatch`` names two input positions whose shapes disagree."""

    def __init__(self, message: str, mismatch: tuple[int, int] | None = None):
        super().__init__(message)
        self.mismatch = mismatch


class ArgumentError(Exception):
    """An argument failed to bind; ``index``/``keyword`` say which one (None: the call itself)."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class Symbol:
    """A bare word that is not a parameter, e.g. ``same`` in ``pad = same``."""

    name: str

    def __str__(self) -> str:
        return self.name


def format_shape(shape: Sequence[int] | None) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape)


# ---- argument kinds: value → normalised value, or ValueError with a reason ---------------


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a whole number, got {describe(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {value:g}")
        value = int(value)
    return value


def count(value: Any) -> int:
    number = _whole(value)
    if number < 1:
        raise ValueError(f"expected a positive whole number, got {number}")
    return number


def natural(value: Any) -> int:
    number = _whole(value)
    if number < 0:
        raise ValueError(f"expected a whole number >= 0, got {number}")
    return number


def _sizes(value: Any, each: Callable[[Any], int]) -> tuple[int, ...]:
    if isinstance(value, tuple):
        if not 1 <= len(value) <= 3:
            raise ValueError(f"expected one to three sizes, got {len(value)}")
        return tuple(each(v) for v in value)
    return (each(value),)


def size(value: Any) -> tuple[int, ...]:
    """``3`` (square) or ``3x5`` / ``(3, 5)``: one positive size per spatial axis."""
    return _sizes(value, count)


def offsets(value: Any) -> tuple[int, ...]:
    return _sizes(value, natural)


def padding(value: Any) -> tuple[int, ...] | str:
    """A padding: sizes ``>= 0`` per axis, or ``same`` / ``valid``."""
    if isinstance(value, Symbol):
        if value.name in ("same", "valid"):
            return value.name
        raise ValueError(f"expected a padding size, 'same' or 'valid', got '{value.name}'")
    return offsets(value)


def flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {describe(value)}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError("expected a number, got one too large to represent") from None


def positive_real(value: Any) -> float:
    number = real(value)
    if number <= 0:
        raise ValueError(f"expected a number > 0, got {number:g}")
    return number


def probability(value: Any) -> float:
    number = real(value)
    if not 0 <= number < 1:
        raise ValueError(f"expected a probability in [0, 1), got {number:g}")
    return number


def fraction(value: Any) -> float:
    """A number in [0, 1], both ends allowed (batchnorm's momentum = 1: the running statistics
    are the last batch's, as PyTorch allows)."""
    number = real(value)
    if not 0 <= number <= 1:
        raise ValueError(f"expected a number in [0, 1], got {number:g}")
    return number


def array_values(value: Any) -> tuple:
    """A rectangular nested list of numbers, e.g. ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of numbers such as [[1, 2], [3, 4]], got {describe(value)}")

    def convert(item: Any, depth: int) -> Any:
        if isinstance(item, list):
            if not item:
                raise ValueError("a list of values may not be empty")
            return tuple(convert(v, depth + 1) for v in item)
        return real(item)

    values = convert(value, 0)

    def dims(item: Any) -> tuple[int, ...]:
        if not isinstance(item, tuple):
            return ()
        inner = {dims(v) for v in item}
        if len(inner) != 1:
            raise ValueError("the rows of a list of values must all have the same length")
        return (len(item), *inner.pop())

    dims(values)
    return values


def array_dims(values: tuple) -> tuple[int, ...]:
    """The shape of a nested tuple made by :func:`array_values`."""
    shape = []
    while isinstance(values, tuple):
        shape.append(len(values))
        values = values[0]
    return tuple(shape)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "x".join(map(str, value)) if all(isinstance(v, int) for v in value) else str(value)
    if isinstance(value, Symbol):
        return f"'{value.name}'"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def arg(
    kind: Callable[[Any], Any], default: Any = MISSING, *, positional: bool = False, doc: str = "", shown: str = ""
) -> Any:
    """Declare a DSL argument of a layer type (``shown``: the default as the docs write it)."""
    return field(default=default, metadata={"kind": kind, "positional": positional, "doc": doc, "shown": shown})


# ---- the layer type ----------------------------------------------------------------------


@dataclass(frozen=True)
class LayerType:
    op: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    # Fusion category, read by optimisation passes (as in TVM): "anchor" (conv, fc), "elementwise",
    # "injective" (reshape-like), "reduction", "merge" (add, concat) or "opaque".
    category: ClassVar[str] = "opaque"
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    summary: ClassVar[str] = ""
    #: Extra text for the layer's row in docs/language.md.
    notes: ClassVar[str] = ""
    #: An activation that conv, conv1d and fc (relu: add too) may apply in their epilogue.
    epilogue_activation: ClassVar[bool] = False
    #: How a conv or fc whose output meets this layer first is initialised: "he" (ReLU family,
    #: for fan-in), "xavier" (tanh, sigmoid, or no nonlinearity), or "look-through" (this layer
    #: does not decide: ask the layer after it).
    weight_init_before: ClassVar[str] = "xavier"
    #: The negative slope that He initialisation before this layer assumes (PReLU's start).
    negative_slope: ClassVar[float] = 0.0
    #: cnnlang parameter name -> attribute of the PyTorch twin (see :meth:`torch_module`).
    torch_names: ClassVar[dict[str, str]] = {"weight": "weight", "bias": "bias"}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "op" in cls.__dict__:
            DEFINED.append(cls)

    # -- binding
    @classmethod
    def bind(cls, positional: list[Any], keywords: dict[str, Any]) -> "LayerType":
        """Build the layer from evaluated DSL arguments; raises :class:`ArgumentError`.

        ``ArgumentError.index`` is the position of the failing argument in the call: positional
        arguments first, then keywords in the order given.
        """
        params = [f for f in fields(cls)]
        pos_fields = [f for f in params if f.metadata.get("positional")]
        by_name = {f.name: f for f in params}
        values: dict[str, tuple[Any, int]] = {}
        if len(positional) > len(pos_fields):
            allowed = ", ".join(f.name for f in pos_fields) or "none"
            raise ArgumentError(
                f"{cls.op} takes {len(pos_fields)} positional argument(s) ({allowed}), got {len(positional)}",
                len(pos_fields),
            )
        for index, (f, value) in enumerate(zip(pos_fields, positional)):
            values[f.name] = (value, index)
        for offset, (name, value) in enumerate(keywords.items()):
            index = len(positional) + offset
            if name not in by_name:
                hint = difflib.get_close_matches(name, list(by_name), n=1)
                known = ", ".join(by_name) or "no arguments"
                suffix = f"; did you mean '{hint[0]}'?" if hint else f" (it takes {known})"
                raise ArgumentError(f"{cls.op} has no argument '{name}'{suffix}", index)
            if name in values:
                raise ArgumentError(f"argument '{name}' of {cls.op} is given twice", index)
            values[name] = (value, index)
        converted: dict[str, Any] = {}
        for f in params:
            if f.name not in values:
                if f.default is MISSING:
                    raise ArgumentError(f"{cls.op} needs the argument '{f.name}' ({f.metadata.get('doc', '')})")
                continue
            value, index = values[f.name]
            try:
                converted[f.name] = f.metadata["kind"](value)
            except ValueError as error:
                raise ArgumentError(f"argument '{f.name}' of {cls.op}: {error}", index) from None
        layer = cls(**converted)
        layer.validate()
        return layer

    def validate(self) -> None:
        """Checks that involve several arguments; raise ArgumentError."""

    def arguments(self) -> dict[str, Any]:
        """The DSL arguments that differ from their defaults, for reports."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.default is MISSING or value != f.default:
                out[f.name] = value
        return out

    # -- rules
    def output_shape(self, inputs: list[Shape]) -> Shape:
        return inputs[0]

    def param_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        return {}

    def buffer_shapes(self, inputs: list[Shape]) -> dict[str, Shape]:
        return {}

    @property
    def trainable(self) -> bool:
        return True

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        """Multiply-accumulates per example (conv and fully connected only; bias adds excluded)."""
        return 0

    def window(self, inputs: list[Shape]) -> tuple[tuple[int, ...], tuple[int, ...]] | None | str:
        """Per spatial axis (effective kernel, stride) for receptive fields; None for pointwise
        layers, "global" for layers that see the whole input."""
        return None

    def explain(self, inputs: list[Shape], output: Shape) -> str:
        """How the output size follows from the input, for ``summary --explain``."""
        if inputs and output == inputs[0]:
            return "same shape as the input"
        return f"{format_shape(inputs[0]) if inputs else ''} -> {format_shape(output)}"

    def label(self) -> str:
        """A short description such as ``conv 3x3, 64, /2``."""
        return self.op

    # -- the runtime's contract
    def initial_value(self, name: str) -> float | None:
        """The constant a parameter or buffer starts at, or None for a weight drawn by fan-in
        (He or Xavier, chosen by the layer its output meets: ``weight_init_before``)."""
        if name == "weight":
            return None
        return 1.0 if name in ("gamma", "running_var") else 0.0

    def forward_reference(self, inputs: list, params: dict, buffers: dict, train: bool = False):
        """The output for a batch: plain NumPy on the user's layout (N x C x ...), float64, as
        readable as a textbook; the oracle the kernels are tested against. Pure: running
        statistics are not updated."""
        raise NotImplementedError(f"{self.op} has no reference forward")

    def backward_reference(self, inputs: list, params: dict, buffers: dict, dy, train: bool = False):
        """(dL/d(each input), {parameter name: dL/d(parameter)}) given dL/d(output) ``dy``."""
        raise NotImplementedError(f"{self.op} has no reference backward")

    def torch_module(self, inputs: list[Shape]):
        """The PyTorch module computing this layer on inputs of per-example shapes ``inputs``,
        for the differential tests and the benchmark's baseline (imports torch)."""
        raise NotImplementedError(f"{self.op} has no PyTorch twin")

    @classmethod
    def signature(cls) -> str:
        """Every argument as docs/language.md shows it: ``name`` when it is required or has no
        default value to show, else ``name = default``."""
        parts = []
        for f in fields(cls):
            if f.metadata.get("shown"):
                parts.append(f"{f.name} = {f.metadata['shown']}")
            elif f.default is MISSING or f.default is None:
                parts.append(f.name)
            else:
                parts.append(f"{f.name} = {_doc_value(f.default)}")
        return ", ".join(parts)

    @classmethod
    def positional_names(cls) -> list[str]:
        """The arguments that may be given by position, in order."""
        return [f.name for f in fields(cls) if f.metadata.get("positional")]


def _doc_value(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-")
    return describe(value)


def numel(shape: Shape) -> int:
    return math.prod(shape)


def expect_rank(op: str, shape: Shape, ranks: tuple[int, ...], hint: str = "") -> None:
    if len(shape) in ranks:
        return
    names = {1: "flat features (N)", 2: "a C x L signal", 3: "a C x H x W image"}
    wanted = " or ".join(names[r] for r in ranks)
    raise ShapeError(f"expects {wanted}, but its input is {format_shape(shape)}{hint}")
