"""The public entry point: load a model from a path, a zoo name or source text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import networkx as nx

from . import ir
from .errors import CnnError, UsageError
from .loader import load_program, load_program_text
from .lower import check_blocks, lower
from .passes import run_pipeline
from .resources import zoo_dir


class ModelNotFound(UsageError):
    """MODEL names neither a file nor a zoo model (a usage error, not a model error)."""


@dataclass
class Model:
    """A compiled model: the IR with shapes and costs. ``graph`` is the NetworkX DiGraph."""

    graph: nx.DiGraph
    source: str  # the file it came from, or "<string>"

    @property
    def name(self) -> str:
        return self.graph.graph["name"]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.graph.nodes[self.graph.graph["input"]]["shape"]

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.graph.nodes[self.graph.graph["outputs"][0]]["shape"]

    @property
    def totals(self) -> dict[str, int]:
        return self.graph.graph["totals"]

    @property
    def errors(self) -> list[CnnError]:
        return self.graph.graph["errors"]

    @property
    def passes(self) -> list[str]:
        """The optimisation passes this model's graph went through (empty: as written)."""
        return list(self.graph.graph.get("optimised", []))

    def optimise(self, passes: str | Iterable[str] | None = "all") -> "Model":
        """This model rewritten for inference by ``passes`` (None, "none" or []: unchanged; "all";
        or names, see ``cnnlang.passes.optimise.PASS_NAMES``). ValueError names an unknown pass."""
        from .passes.optimise import optimise, pass_names

        names = pass_names(passes)
        if not names:
            return self
        return Model(optimise(self.graph, names), self.source)

    @property
    def warnings(self) -> list[CnnError]:
        """Diagnostics that stop nothing (``severity`` "warning"), e.g. a tensor nothing uses."""
        return self.graph.graph.get("warnings", [])

    def build(
        self,
        *,
        seed: int = 0,
        dtype: str = "float32",
        input_grad: bool = False,
        passes: str | Iterable[str] | None = None,
        backend=None,
        device: str | None = None,
    ):
        """A runnable :class:`~cnnlang.runtime.network.Network` with seeded initial weights.

        ``passes``: None, "none" or [] runs the graph as written; "all" or a list of pass names
        (``cnnlang.passes.optimise.PASS_NAMES``) makes eval-mode forward run the optimised graph
        (training always runs the original one). ValueError names an unknown pass. ``backend``:
        a name or :class:`~cnnlang.runtime.backend.Backend` (default: the CPU). ``device``: "cpu",
        "cuda" or "auto" (the GPU when one is usable), instead of ``backend``; a GPU that cannot
        be used raises :class:`~cnnlang.runtime.backend.DeviceError` saying why, in one line."""
        from .runtime.backend import device_backend
        from .runtime.network import Network

        if device is not None:
            if backend is not None:
                raise ValueError("give device or backend, not both")
            backend = device_backend(device)
        optimised = self.optimise(passes)
        return Network(
            self, seed=seed, dtype=dtype, input_grad=input_grad, optimised=None if optimised is self else optimised,
            backend=backend,
        )

    def dump(self) -> str:
        return ir.dump(self.graph)

    def _repr_svg_(self) -> str | None:
        """The diagram in notebooks (None, so a text repr is used, when Graphviz is missing)."""
        from .render import to_svg

        return to_svg(self)


def zoo_names() -> list[str]:
    """Zoo files that define a network (files of shared blocks are not models)."""
    return sorted(p.stem for p in zoo_dir().glob("*.cnn") if _defines_network(p))


def _defines_network(path: Path) -> bool:
    return any(line.lstrip().startswith("network ") for line in path.read_text(encoding="utf-8").splitlines())


def resolve(model: str | Path) -> Path:
    """A path as given, else the zoo model of that name."""
    path = Path(model)
    try:
        if path.is_file():
            return path
        candidate = zoo_dir() / f"{model}.cnn"
        if not str(model).endswith(".cnn") and candidate.is_file():
            return candidate
    except (OSError, ValueError):  # a name too long for a path, or with a NUL in it
        pass
    import difflib

    hint = difflib.get_close_matches(str(model), zoo_names(), n=1)
    raise ModelNotFound(
        f"no file or zoo model named '{model}'" + (f"; did you mean '{hint[0]}'?" if hint else "; 'cnnlang zoo' lists the zoo")
    )


def check(model: str | Path) -> list[CnnError]:
    """Verify a model file, or a file of blocks only (its calls must name known layers and
    blocks); raises :class:`CnnError`, else returns the warnings."""
    path = resolve(model)
    program = load_program(path)
    if program.module.network is None:
        check_blocks(program)
        return []
    graph = run_pipeline(lower(program))
    error = ir.first_error(graph)
    if error is not None:
        raise error
    return graph.graph["warnings"]


def load(
    model: str | Path,
    *,
    input_shape: tuple[int, ...] | None = None,
    keep_going: bool = False,
) -> Model:
    """Compile a model given as a path, a zoo name, or .cnn source text (anything with a '{').

    Raises :class:`CnnError` on the first error (further ones in ``error.others``) unless
    ``keep_going``, which returns the model with failing nodes marked (for drawing broken models).
    """
    if isinstance(model, str) and "{" in model:
        program, source = load_program_text(model), "<string>"
    else:
        path = resolve(model)
        program = load_program(path)
        in_zoo = path.is_relative_to(zoo_dir())  # zoo/lecture/ models too
        source = f"zoo/{path.relative_to(zoo_dir()).as_posix()}" if in_zoo else str(path)
    graph = run_pipeline(lower(program, input_shape))
    error = ir.first_error(graph)
    if error is not None and not keep_going:
        raise error
    return Model(graph, source)
