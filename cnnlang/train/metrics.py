"""Classification metrics: top-k hits, a confusion matrix with a text and a JSON view, and a
running mean for per-batch values such as the loss."""

from __future__ import annotations

import math

import numpy as np

# Above this many classes the full matrix is too wide to read; the text view lists pairs instead.
MAX_TABLE_CLASSES = 20
CONFUSED_PAIRS_SHOWN = 10


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> int:
    """How many rows of ``logits`` (N x C) have their label among the top ``k``.

    Ties count against the label: a row is correct when fewer than k *other* classes have a logit
    greater than or equal to the label's. So all-equal logits score 0 for k < C (an untrained or
    dead network is not credited with lucky ties), and the result never depends on sort order.
    A NaN logit for the label is never correct; NaN logits of other classes never outrank it.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be N x C, got shape {logits.shape}")
    n, c = logits.shape
    _check_classes(labels, c, "labels", n)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    label_logit = logits[np.arange(n), labels][:, None]
    at_least_as_high = (logits >= label_logit).sum(axis=1) - 1  # minus the label itself
    return int(np.count_nonzero((at_least_as_high < k) & ~np.isnan(label_logit[:, 0])))


class ConfusionMatrix:
    """Counts of (true class, predicted class): ``matrix[t, p]``, rows true, columns predicted."""

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, predictions: np.ndarray, labels: np.ndarray) -> None:
        """Add a batch: ``predictions`` are class indices (N), or logits (N x C) reduced by
        argmax (the first maximum on a tie); ``labels`` are the true class indices (N)."""
        predictions = np.asarray(predictions)
        labels = np.asarray(labels)
        c = self.num_classes
        if predictions.ndim == 2:
            if predictions.shape[1] != c:
                raise ValueError(f"logits have {predictions.shape[1]} columns; the confusion matrix has {c} classes")
            predictions = predictions.argmax(axis=1)
        _check_classes(labels, c, "labels", None)
        _check_classes(predictions, c, "predictions", labels.shape[0])
        self.matrix += np.bincount(labels * c + predictions, minlength=c * c).reshape(c, c)

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    @property
    def accuracy(self) -> float:
        """Fraction of examples on the diagonal; 0.0 before any update."""
        total = self.total
        return float(np.trace(self.matrix)) / total if total else 0.0

    def per_class_recall(self) -> np.ndarray:
        """For each true class, the fraction predicted correctly; NaN for a class never seen."""
        seen = self.matrix.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(seen > 0, np.diag(self.matrix) / np.maximum(seen, 1), np.nan)

    def most_confused(self, count: int = CONFUSED_PAIRS_SHOWN) -> list[tuple[int, int, int]]:
        """The largest off-diagonal cells as (true, predicted, count), largest first; ties in
        (true, predicted) order."""
        off = self.matrix.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(-off, axis=None, kind="stable")[:count]
        pairs = [(int(i // self.num_classes), int(i % self.num_classes), int(off.flat[i])) for i in flat]
        return [pair for pair in pairs if pair[2] > 0]

    def to_json(self) -> dict:
        """Plain JSON-serialisable data (a never-seen class's recall is null)."""
        return {
            "num_classes": self.num_classes,
            "total": self.total,
            "accuracy": self.accuracy,
            "per_class_recall": [None if math.isnan(r) else float(r) for r in self.per_class_recall()],
            "matrix": self.matrix.tolist(),
        }

    def to_text(self, class_names: list[str] | None = None) -> str:
        """An aligned table with the diagonal in brackets and each class's recall; above
        MAX_TABLE_CLASSES classes, the most-confused pairs instead."""
        head = f"accuracy {self.accuracy:.2%} over {self.total:,} examples"
        return "\n".join([head, self.body_text(class_names)])

    def body_text(self, class_names: list[str] | None = None) -> str:
        """:meth:`to_text` without its accuracy line (for reports that state it themselves)."""
        c = self.num_classes
        names = [str(i) for i in range(c)] if class_names is None else [str(n) for n in class_names]
        if len(names) != c:
            raise ValueError(f"{len(names)} class names given for a {c}-class confusion matrix")
        if c > MAX_TABLE_CLASSES:
            return "\n".join(self._pairs_text(names))
        return "\n".join(self._table_text(names, labelled=class_names is not None))

    def _table_text(self, names: list[str], labelled: bool) -> list[str]:
        c = self.num_classes
        # Columns are headed by class index (names would make the table too wide); rows carry
        # the index and, when given, the name. A diagonal cell reads "[12]", any other "12 ",
        # so the digits of a column line up under its header.
        width = max(len(str(int(self.matrix.max()))), len(str(c - 1))) + 3
        # A name that is just the index (MNIST's "0".."9") is not repeated.
        rows = [f"{i} {names[i]}" if labelled and names[i] != str(i) else str(i) for i in range(c)]
        corner = "true \\ predicted"
        left = max(len(corner), *(len(r) for r in rows))
        header = "".join(_cell(str(j), width, diagonal=False) for j in range(c))
        lines = [corner.ljust(left) + header + "  recall"]
        recall = self.per_class_recall()
        for i in range(c):
            cells = "".join(_cell(str(v), width, diagonal=i == j) for j, v in enumerate(self.matrix[i].tolist()))
            shown = "-" if math.isnan(recall[i]) else f"{recall[i]:.1%}"
            lines.append(rows[i].ljust(left) + cells + shown.rjust(8))
        return lines

    def _pairs_text(self, names: list[str]) -> list[str]:
        pairs = self.most_confused()
        lines = [f"{self.num_classes} classes: too many for a table; the {CONFUSED_PAIRS_SHOWN} most-confused pairs"]
        if not pairs:
            return lines + ["  (no confusions)"]
        width = max(len(names[t]) for t, _, _ in pairs)
        for true, predicted, count in pairs:
            lines.append(f"  {names[true]:>{width}} -> {names[predicted]}: {count:,}")
        return lines


class RunningMean:
    """A weighted mean over batches: ``add(batch_mean, batch_size)``; ``mean`` is 0.0 when empty."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def add(self, value: float, count: int = 1) -> None:
        self.total += float(value) * count
        self.count += count

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0


def _cell(text: str, width: int, diagonal: bool) -> str:
    return (f"[{text}]" if diagonal else f"{text} ").rjust(width)


def _check_classes(values: np.ndarray, num_classes: int, what: str, length: int | None) -> None:
    if values.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of class indices, got shape {values.shape}")
    if length is not None and values.shape[0] != length:
        raise ValueError(f"{what} has {values.shape[0]} entries, expected {length}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got {values.dtype}")
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what[:-1]} {int(values[first])} (at index {first}) is out of range for {num_classes} classes")
