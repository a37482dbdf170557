"""Limits on what a model may expand to, and the counter that enforces them while lowering, so a
runaway model stops at once with the arithmetic instead of filling memory."""

from __future__ import annotations

import contextlib
import math

from .errors import CnnError, Span

# A guard against runaway counts (`* 99999999`), far above any real network's depth.
MAX_REPEAT = 10_000
# Limits on what a model may expand to, checked while expanding so that a runaway model
# (`repeat 1000 { repeat 1000 { ... } }`, blocks that call blocks ten times over) stops at once
# with the arithmetic, instead of filling memory. ResNet-1001 has about 3,000 layers.
MAX_LAYERS = 10_000
# Statements, calls and repetitions expanded: bounds the work of blocks that add no layers.
MAX_EXPANSION_STEPS = 100_000
# Blocks, branches, residuals and repeats nested inside each other once blocks are expanded
# (each level is a few frames of recursion in lowering).
MAX_EXPANSION_DEPTH = 50


class ExpansionLimit(CnnError):
    """A limit on what a model expands to was passed: lowering stops at once instead of going on
    with the next statement, as it does after other errors."""

    placed = False  # whether the block calls around it are noted yet


class Expansion:
    """Counts what lowering expands (layers, steps, nesting) and stops it, with the arithmetic,
    as soon as a limit is certain to be passed."""

    def __init__(self) -> None:
        self.layers = 0
        self.steps = 0
        self.depth = 0
        # Repetitions being expanded: [times, pass (0-based), span, what].
        self.repeats: list[list] = []
        self.last_span: Span | None = None  # where an empty body's errors point


    @contextlib.contextmanager
    def nested(self, span: Span | None):
        if self.depth >= MAX_EXPANSION_DEPTH:
            raise ExpansionLimit(
                f"blocks, branches, residuals and repeats nest more than {MAX_EXPANSION_DEPTH} levels deep "
                "once blocks are expanded", span or self.last_span,
            )
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    @contextlib.contextmanager
    def repeating(self, times: int, span: Span, what: str):
        self.repeats.append([times, -1, span, what])
        try:
            yield
        finally:
            self.repeats.pop()

    def next_pass(self, span: Span) -> None:
        self.repeats[-1][1] += 1
        self.step(span)

    def step(self, span: Span) -> None:
        self.steps += 1
        self.last_span = span
        if self.steps > MAX_EXPANSION_STEPS:
            raise ExpansionLimit(
                f"expanding this model takes more than {MAX_EXPANSION_STEPS:,} steps (statements, block calls "
                f"and passes of repeats){self._arithmetic()}; a model this large is almost certainly a mistake", span,
            )

    def add_layer(self, span: Span) -> None:
        """Count one layer; fail now when the repetitions around it will certainly repeat it past
        the limit (every remaining pass of a repetition expands its body again, this layer included)."""
        self.layers += 1
        still_to_come, inner = 0, 1
        for times, done, _, _ in reversed(self.repeats):
            still_to_come += (times - done - 1) * inner
            inner *= times
        if self.layers + still_to_come > MAX_LAYERS:
            total = f"{self.layers + still_to_come:,}"
            raise ExpansionLimit(
                f"this model expands to at least {total} layers{self._arithmetic()}; "
                f"a model may have at most {MAX_LAYERS:,}", span,
            )

    def _arithmetic(self) -> str:
        if not self.repeats:
            return f" ({self.layers:,} layers so far, through blocks that call blocks)"
        product = " × ".join(f"{what} {times:,} (line {span.line})" for times, _, span, what in self.repeats)
        copies = math.prod(times for times, _, _, _ in self.repeats)
        return f": {product} = {copies:,} copies of the layer here"
