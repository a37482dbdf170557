"""Diagnostics: one error type that carries source spans, and one renderer.

Every problem a user can cause (syntax, unknown names, bad arguments, shape mismatches) is raised
as a :class:`CnnError`. The CLI renders it as ``file:line:col: error: message`` followed by the
source line and a caret, then one ``note:`` per extra location (e.g. where a block was used).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Span:
    """A region of source text: 1-based line and column, end column exclusive."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Note:
    span: Span | None
    message: str


@dataclass
class CnnError(Exception):
    """A user-facing error located in a .cnn source."""

    message: str
    span: Span | None = None
    notes: list[Note] = field(default_factory=list)
    # Further independent errors found in the same model (two bad branches, say): the CLI
    # reports them all so one mistake does not hide the next.
    others: list["CnnError"] = field(default_factory=list)
    # "warning" for a diagnostic that does not stop anything (a tensor nothing uses): rendered
    # the same way, kept in ``graph.graph["warnings"]``, never raised.
    severity: str = "error"

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return render(self)

    def with_note(self, span: Span | None, message: str) -> "CnnError":
        self.notes.append(Note(span, message))
        return self


# Source text by file name, so diagnostics can quote lines of files that were read earlier
# (imports, zoo files) or of text that never was a file.
_SOURCES: dict[str, str] = {}


def remember_source(file: str, text: str) -> None:
    _SOURCES[file] = text


def _source_line(file: str, line: int) -> str | None:
    text = _SOURCES.get(file)
    if text is None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        _SOURCES[file] = text
    # Lines as the parser counts them: only "\n" ends one (splitlines would also split at "\r",
    # form feeds and the like, and quote the wrong line).
    lines = text.split("\n")
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return None


def _quote(span: Span) -> list[str]:
    text = _source_line(span.file, span.line)
    if text is None:
        return []
    # One printable character per source character, so the caret stays under its column.
    text = "".join(c if c.isprintable() else "?" for c in text.expandtabs(1).rstrip())
    start = max(span.column - 1, 0)
    if span.end_line == span.line and span.end_column and span.end_column > span.column:
        width = span.end_column - span.column
    else:
        width = max(len(text) - start, 1)
    if len(text) > _MAX_QUOTE:
        # Show a window of a very long line around the caret.
        left = max(start - _MAX_QUOTE // 2, 0)
        text = ("..." if left else "") + text[left:left + _MAX_QUOTE] + ("..." if left + _MAX_QUOTE < len(text) else "")
        start = start - left + (3 if left else 0)
        width = min(width, _MAX_QUOTE - (start - (3 if left else 0)))
    gutter = f"{span.line:>5} | "
    return [gutter + text, " " * (len(gutter) - 2) + "| " + " " * start + "^" + "~" * (max(width, 1) - 1)]


_MAX_QUOTE = 120


def printable(text: str) -> str:
    """``text`` with control characters escaped, so one diagnostic stays one line."""
    return "".join(c if c.isprintable() or c == " " else ascii(c)[1:-1] for c in text)


def _located(span: Span | None, kind: str, message: str) -> list[str]:
    message = printable(message)
    if span is None:
        return [f"{kind}: {message}"]
    return [f"{span}: {kind}: {message}", *_quote(span)]


def render(error: CnnError) -> str:
    """The diagnostic text of this error alone (not its ``others``), without a trailing newline."""
    lines = _located(error.span, error.severity, error.message)
    for note in error.notes:
        lines += _located(note.span, "note", note.message)
    return "\n".join(lines)


class UsageError(Exception):
    """Something the user handed over that does not fit: an input file, a weight file, an array
    of the wrong shape. The CLI prints the message (which says what was expected) and exits 2."""
