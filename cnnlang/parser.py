"""Text → :class:`~cnnlang.syntax.Module`, with syntax errors reported in words.

(~350 lines: the Lark transformer to syntax objects and the wording of syntax errors belong
together, since each message names the grammar's own constructs.)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from . import syntax as s
from .errors import CnnError, Span, remember_source
from .resources import grammar_file


class _Layout:
    """Makes line breaks insignificant inside ``(...)``/``[...]`` and after ``->``.

    So a long layer call may wrap, and a chain may break after an arrow. (A break *before* an
    arrow is part of the ``_ARROW`` terminal itself: a post-lexer may not hold tokens back, since
    the contextual lexer reads the next token in the parser state the held one would change.)
    """

    always_accept = ("_SEP",)

    def __init__(self) -> None:
        # Braces still open, so an unexpected end of file can point at the one left unclosed.
        self.open_braces: list[Token] = []

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        depth = 0
        previous: Token | None = None
        self.open_braces = []
        for token in stream:
            kind = token.type
            if kind == "LBRACE":
                self.open_braces.append(token)
            elif kind == "RBRACE" and self.open_braces:
                self.open_braces.pop()
            if kind == "_SEP" and (depth > 0 or (previous is not None and previous.type == "_ARROW")):
                continue
            if kind in ("LPAR", "LSQB"):
                depth += 1
            elif kind in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            previous = token
            yield token


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        grammar_file().read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        postlex=_Layout(),
        propagate_positions=True,
        maybe_placeholders=True,
    )


def _span(file: str, meta) -> Span:
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _token_span(file: str, token: Token) -> Span:
    return Span(file, token.line, token.column, token.end_line, token.end_column)


# Python refuses to convert longer digit strings; no size in a network comes near.
_MAX_DIGITS = 100


@v_args(meta=True)
class _ToSyntax(Transformer):
    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _sp(self, meta) -> Span:
        return _span(self.file, meta)

    # -- expressions
    def _int(self, text: str, meta) -> int:
        if len(text) > _MAX_DIGITS:
            raise CnnError(f"a number of {len(text)} digits is too long (at most {_MAX_DIGITS})", self._sp(meta))
        return int(text)

    def number(self, meta, children):
        text = str(children[0])
        value = float(text) if any(c in text for c in ".eE") else self._int(text, meta)
        return s.Literal(value, self._sp(meta))

    def dims(self, meta, children):
        return s.Literal(tuple(self._int(p, meta) for p in str(children[0]).replace("×", "x").split("x")), self._sp(meta))

    def string(self, meta, children):
        return s.Literal(str(children[0])[1:-1], self._sp(meta))

    def name(self, meta, children):
        return s.NameRef(str(children[0]), self._sp(meta))

    def true(self, meta, children):
        return s.Literal(True, self._sp(meta))

    def false(self, meta, children):
        return s.Literal(False, self._sp(meta))

    def _binop(op):  # noqa: N805 - a factory used while the class body runs
        def method(self, meta, children):
            return s.BinOp(op, children[0], children[1], self._sp(meta))

        return method

    add = _binop("+")
    sub = _binop("-")
    mul = _binop("*")
    div = _binop("/")
    floordiv = _binop("//")
    mod = _binop("%")

    def neg(self, meta, children):
        return s.Neg(children[0], self._sp(meta))

    def tuple(self, meta, children):
        return s.TupleExpr(tuple(children), self._sp(meta))

    def list(self, meta, children):
        return s.ListExpr(tuple(c for c in children if c is not None), self._sp(meta))

    # -- layer and block calls
    def kwarg(self, meta, children):
        return s.Argument(str(children[0]), children[1], self._sp(meta))

    def arglist(self, meta, children):
        return [
            c if isinstance(c, s.Argument) else s.Argument(None, c, c.span)
            for c in children
            if c is not None
        ]

    def repeat(self, meta, children):
        return children[0]

    def call(self, meta, children):
        name, args, repeat = children
        return s.Call(str(name), args or [], repeat, self._sp(meta))

    def concat_call(self, meta, children):
        return s.Call("concat", children[0] or [], None, self._sp(meta))

    def labeled(self, meta, children):
        label, unit = children
        unit.label = str(label)
        return unit

    # -- structure
    def body(self, meta, children):
        return [c for c in children if c is not None]

    def branch(self, meta, children):
        return children[0]

    def concat_block(self, meta, children):
        return s.Concat([c for c in children if c is not None], self._sp(meta))

    def shortcut_named(self, meta, children):
        return (str(children[0]), self._sp(meta))

    def shortcut_body(self, meta, children):
        return (children[0], self._sp(meta))

    def residual_block(self, meta, children):
        body, shortcut = children
        kind, where = shortcut if shortcut is not None else (None, None)
        return s.Residual(body, kind, self._sp(meta), where)

    def repeat_block(self, meta, children):
        return s.Repeat(children[0], children[1], self._sp(meta))

    def source(self, meta, children):
        return [(str(t), _token_span(self.file, t)) for t in children]

    def chain(self, meta, children):
        if children and isinstance(children[0], list):
            return s.Chain(children[0], children[1:], self._sp(meta))
        return s.Chain(None, children, self._sp(meta))

    def input_stmt(self, meta, children):
        return s.InputStmt(children[0], self._sp(meta))

    def output_stmt(self, meta, children):
        return s.OutputStmt([(str(t), _token_span(self.file, t)) for t in children], self._sp(meta))

    # -- top level
    def param(self, meta, children):
        return s.Param(str(children[0]), children[1], self._sp(meta))

    def block_def(self, meta, children):
        name, *params, body = children
        return s.BlockDef(str(name), [p for p in params if p is not None], body, self._sp(meta))

    def network_def(self, meta, children):
        return s.NetworkDef(str(children[0]), children[1], self._sp(meta))

    def import_all(self, meta, children):
        return s.Import(str(children[0])[1:-1], None, self._sp(meta))

    def import_names(self, meta, children):
        path, *names = children
        return s.Import(str(path)[1:-1], [(str(t), _token_span(self.file, t)) for t in names], self._sp(meta))

    def start(self, meta, children):
        module = s.Module(self.file)
        for item in children:
            if item is None:
                continue
            if isinstance(item, s.Import):
                module.imports.append(item)
            elif isinstance(item, s.BlockDef):
                if item.name in module.blocks:
                    raise CnnError(f"block '{item.name}' is defined twice", item.span).with_note(
                        module.blocks[item.name].span, "first defined here"
                    )
                module.blocks[item.name] = item
            else:
                if module.network is not None:
                    raise CnnError(
                        "a file holds at most one network; put shared blocks in a file of their own "
                        "and import it",
                        item.span,
                    ).with_note(module.network.span, f"network '{module.network.name}' is here")
                module.network = item
        return module


# ---- syntax errors in words --------------------------------------------------------------

_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "DIMS": "a size such as 3x3",
    "STRING": 'a quoted file name such as "blocks.cnn"',
    "_SEP": "a line break",
    "_ARROW": "'->'",
    "$END": "the end of the file",
}


def _describe(terminal: str) -> str:
    if terminal in _WORDS:
        return _WORDS[terminal]
    try:
        pattern = _lark().get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    return f"'{pattern.value}'" if pattern.type == "str" else terminal.lower()


_STATEMENT_START = {"NAME", "FROM", "RESIDUAL", "CONCAT", "REPEAT"}


def _expected_words(expected: set[str]) -> str:
    expected = set(expected)
    summary = []
    if _STATEMENT_START <= expected:
        expected -= _STATEMENT_START | {"INPUT", "OUTPUT"}
        summary = ["a layer", "a block call"]
    words = summary + sorted({_describe(t) for t in expected if not t.startswith("__")})
    # Operators are noise in "expected" lists: the structural choices are what helps.
    structural = [w for w in words if w not in {"'+'", "'-'", "'*'", "'/'", "'//'", "'%'"}]
    words = structural or words
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _found(token: Token) -> str:
    if token.type == "$END":
        return "the end of the file"
    if token.type == "_SEP":
        return "a line break"
    return f"'{token.value}'"


def _syntax_error(error: UnexpectedInput, file: str, text: str) -> CnnError:
    if isinstance(error, UnexpectedCharacters):
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        span = Span(file, error.line, error.column, error.line, error.column + 1)
        if char == '"':
            return CnnError("unterminated string: a closing '\"' is missing on this line", span)
        return CnnError(f"unexpected character '{char}'", span)
    if isinstance(error, UnexpectedToken):
        token = error.token
        if token.type == "$END" or token.line is None:
            lines = text.splitlines() or [""]
            line = len(lines)
            span = Span(file, line, len(lines[-1]) + 1, line, len(lines[-1]) + 2)
        else:
            length = max(len(str(token.value).splitlines()[0]) if token.value else 1, 1)
            if token.type == "_SEP":
                length = 1
            span = Span(file, token.line, token.column, token.line, token.column + length)
        try:
            # The exact set the parser can take here; ``error.expected`` can hold extra
            # terminals that LALR's merged states only look ahead at.
            expected = error.interactive_parser.accepts() or error.expected
        except Exception:  # noqa: BLE001 - fall back to Lark's own list
            expected = error.expected
        result = CnnError(f"expected {_expected_words(expected)}, found {_found(token)}", span)
        braces = _lark().options.postlex.open_braces
        if token.type == "$END" and braces:
            brace = braces[-1]
            result.with_note(_token_span(file, brace), "this '{' is never closed")
        return result
    return CnnError(f"syntax error: {error}", Span(file, getattr(error, "line", 1) or 1, getattr(error, "column", 1) or 1))


# The deepest parse tree accepted. Every walk over the syntax (the transformer, evaluation,
# lowering) recurses once per level, so this keeps them far from Python's recursion limit; the
# zoo's deepest file is 13 levels.
MAX_NESTING = 100


def _check_nesting(tree: Tree, file: str) -> None:
    """Refuse a parse tree deeper than MAX_NESTING, at the first node past the limit (iterative,
    so the check itself cannot overflow the stack)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_NESTING:
            raise CnnError(
                f"nested too deeply: brackets, operators, blocks and branches here are more than "
                f"{MAX_NESTING} levels deep; split the expression or move the inner part into a block",
                _span(file, node.meta) if not node.meta.empty else Span(file, 1, 1),
            )
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def parse(text: str, file: str = "<string>") -> s.Module:
    """Parse .cnn source text; raises :class:`CnnError` on a syntax error."""
    remember_source(file, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as error:
        raise _syntax_error(error, file, text) from None
    _check_nesting(tree, file)
    try:
        return _ToSyntax(file).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, CnnError):
            raise error.orig_exc from None
        raise
