"""Reading .cnn files and resolving their imports into the blocks each file can see."""

from __future__ import annotations

import difflib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import syntax as s
from .errors import CnnError, Span
from .layers import REGISTRY
from .parser import parse
from .resources import zoo_dir


@dataclass
class BoundBlock:
    """A block definition with the blocks visible where it was written (lexical scope)."""

    definition: s.BlockDef
    namespace: dict[str, "BoundBlock"] = field(repr=False)


@dataclass
class Program:
    module: s.Module
    blocks: dict[str, BoundBlock]


# Far above any real model (the zoo's largest file is a few kilobytes); a bigger file is not a model.
MAX_SOURCE_BYTES = 1 << 20


def read_source(path: Path, span: Span | None = None) -> str:
    """The text of a .cnn file. Errors are located at ``span`` (the import that named the file)
    or at the file itself; a non-UTF-8 byte is reported at its own line and column, quoting nothing."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise CnnError(f"{path}: not a regular file; expected a .cnn source", span)
        with open(path, "rb") as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except OSError as error:
        raise CnnError(f"{path}: cannot read: {error.strerror or error}", span) from None
    if len(data) > MAX_SOURCE_BYTES:
        raise CnnError(f"{path}: more than {MAX_SOURCE_BYTES:,} bytes; a .cnn source is far smaller", span)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[:error.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1:].decode("utf-8", errors="replace")) + 1
        # No source is remembered for this file, so the diagnostic quotes none of its bytes.
        raise CnnError(f"byte 0x{data[error.start]:02x} is not UTF-8 text; a .cnn source is UTF-8",
                       Span(str(path), line, column)) from None


def _import_candidates(imp: s.Import, directory: Path) -> Iterator[Path]:
    """The files an import may name (next to the importing file, then in the zoo), refusing
    anything that is not a .cnn file by its name, before touching the file system."""
    if Path(imp.path).suffix != ".cnn":
        raise CnnError(f"cannot import '{imp.path}': only .cnn files can be imported", imp.span)
    for folder in (directory, zoo_dir()):
        candidate = folder / imp.path
        try:
            if candidate.is_file():
                resolved = candidate.resolve()
                if resolved.suffix != ".cnn":
                    raise CnnError(f"cannot import '{imp.path}': it links to '{resolved.name}', which is not a .cnn file", imp.span)
                yield resolved
        except OSError as error:  # a name too long for the file system, a loop of links
            raise CnnError(f"cannot import '{imp.path}': {error.strerror or error}", imp.span) from None


class _Loader:
    def __init__(self) -> None:
        self.namespaces: dict[Path, dict[str, BoundBlock]] = {}
        self.loading: list[Path] = []

    def program(self, text: str, file: str, directory: Path) -> Program:
        module = parse(text, file)
        return Program(module, self.namespace(module, directory))

    def namespace(self, module: s.Module, directory: Path) -> dict[str, BoundBlock]:
        namespace: dict[str, BoundBlock] = {}
        origin: dict[str, Span] = {}
        for imp in module.imports:
            imported = self.imported(imp, directory)
            wanted = imp.names if imp.names is not None else [(name, imp.span) for name in imported]
            for name, span in wanted:
                if name not in imported:
                    hint = difflib.get_close_matches(name, list(imported), n=1)
                    raise CnnError(
                        f"'{imp.path}' defines no block '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                        span,
                    )
                if name in namespace and namespace[name] is not imported[name]:
                    raise CnnError(f"block '{name}' is imported twice", span).with_note(origin[name], "first imported here")
                namespace[name] = imported[name]
                origin[name] = span
        for name, definition in module.blocks.items():
            if name in REGISTRY:
                raise CnnError(f"block '{name}' has the name of a built-in layer; choose another name", definition.span)
            if name in namespace:
                raise CnnError(f"block '{name}' is defined here and also imported", definition.span).with_note(
                    origin[name], "imported here"
                )
            namespace[name] = BoundBlock(definition, namespace)
        return namespace

    def imported(self, imp: s.Import, directory: Path) -> dict[str, BoundBlock]:
        path = next(_import_candidates(imp, directory), None)
        if path is None:
            raise CnnError(f"cannot import '{imp.path}': no such file next to this one or in the zoo", imp.span)
        if path in self.loading:
            chain = " -> ".join(p.name for p in self.loading[self.loading.index(path):] + [path])
            raise CnnError(f"circular import: {chain}", imp.span)
        if path not in self.namespaces:
            self.loading.append(path)
            try:
                # Importing a whole model is fine: only its blocks are taken.
                module = parse(read_source(path, imp.span), source_name(path))
                self.namespaces[path] = self.namespace(module, path.parent)
            finally:
                self.loading.pop()
        # A file exports every block it can see, its own and those it imported.
        return self.namespaces[path]


def source_name(path: Path) -> str:
    """How diagnostics name a file: a zoo file as ``zoo:NAME.cnn``; another as the user wrote it,
    or relative to the working directory when it lies inside it (else absolute)."""
    absolute = path.resolve()
    zoo = zoo_dir().resolve()
    if absolute.is_relative_to(zoo):
        return f"zoo:{absolute.relative_to(zoo).as_posix()}"
    if not path.is_absolute():
        return str(path)
    cwd = Path.cwd().resolve()
    return str(absolute.relative_to(cwd)) if absolute.is_relative_to(cwd) else str(path)


def load_program(path: Path) -> Program:
    """Parse a .cnn file and everything it imports."""
    return _Loader().program(read_source(path), source_name(path), path.parent)


def load_program_text(text: str, file: str = "<string>", directory: Path | None = None) -> Program:
    return _Loader().program(text, file, directory or Path.cwd())
