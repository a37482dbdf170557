"""Block recovery: repeated isomorphic runs of items become one parameterised ``block``.

Two windows of items are isomorphic when they have the same structure and layer types (their
*signature*); what differs between them (channels, strides, kernels) becomes the block's
parameters, and a value that is always a whole multiple of another parameter is written as an
expression of it (``c * 4``). Like grammar compression (Re-Pair), the window that saves the most
lines is replaced first, everywhere it occurs (block bodies included, so blocks nest), until no
window pays for itself: a block must at least halve the lines its uses stand for. Runs of
identical consecutive calls become ``block(...) * n``, runs of identical layers ``repeat n { }``.

(~375 lines: signatures, parameter inference and the greedy replacement loop are one algorithm
over one data structure; split, each part would need the others' internals.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from ..layers import REGISTRY
from .structure import Call, Concat, LayerItem, Repeat, Residual

MAX_WINDOW = 6
MIN_GAIN = 2.0  # lines the uses stand for / (calls + body lines)
DEFAULT_SHARE = 0.6  # a parameter gets its most common value as default when that many uses have it
_PARAM_NAMES = {"filters": "c", "units": "units", "kernel": "k", "stride": "stride", "pad": "pad", "p": "p"}


@dataclass(frozen=True)
class Param:
    """A block parameter in a body, times a whole number (``c * 4``)."""

    name: str
    scale: int = 1


@dataclass
class Block:
    name: str
    params: list[str]
    defaults: dict[str, Any]
    body: list = field(default_factory=list)


def recover_blocks(items: list) -> tuple[list, list[Block]]:
    """(network body, blocks in definition order) with repeated windows made into blocks."""
    blocks: list[Block] = []
    _repeat_runs(items)
    for chain in _chains(items, []):
        _single_runs(chain)
    while True:
        chains = list(_chains(items, blocks))
        best = _best_window(chains)
        if best is None:
            break
        blocks.append(_extract(best, chains, blocks))
        for chain in _chains(items, blocks):
            _call_runs(chain)
    for chain in _chains(items, blocks):
        _unwrap_single_runs(chain)
    return items, _definition_order(blocks)


# ---- what items are made of


def signature(item) -> tuple:
    if isinstance(item, LayerItem):
        return ("L", item.op)
    if isinstance(item, Residual):
        return ("R", _signatures(item.body), None if item.shortcut is None else _signatures(item.shortcut))
    if isinstance(item, Concat):
        return ("K", tuple(_signatures(b) for b in item.branches))
    if isinstance(item, Call):
        return ("C", item.block.name)
    return ("P", _signatures(item.body))


def _signatures(items: list) -> tuple:
    return tuple(signature(i) for i in items)


def slots(item) -> list:
    """The item's values in a fixed order (what may differ between isomorphic items)."""
    if isinstance(item, LayerItem):
        return list(item.values.values())
    if isinstance(item, Residual):
        return _all_slots(item.body) + _all_slots(item.shortcut or [])
    if isinstance(item, Concat):
        return [v for b in item.branches for v in _all_slots(b)]
    if isinstance(item, Call):
        return list(item.args)
    return _all_slots(item.body) + [item.n]


def _all_slots(items: list) -> list:
    return [v for i in items for v in slots(i)]


def _rebuild(item, values: Iterator):
    """A body copy of ``item`` with its slots taken from ``values`` (no concrete layers)."""
    if isinstance(item, LayerItem):
        return LayerItem(None, item.op, {k: next(values) for k in item.values})
    if isinstance(item, Residual):
        body = [_rebuild(i, values) for i in item.body]
        shortcut = None if item.shortcut is None else [_rebuild(i, values) for i in item.shortcut]
        return Residual(body, shortcut)
    if isinstance(item, Concat):
        return Concat([[_rebuild(i, values) for i in b] for b in item.branches])
    if isinstance(item, Call):
        return Call(item.block, [next(values) for _ in item.args], [])
    body = [_rebuild(i, values) for i in item.body]
    return Repeat(next(values), body)


def size(item) -> int:
    """How many layers the item stands for."""
    if isinstance(item, LayerItem):
        return 1
    if isinstance(item, Residual):
        return sum(map(size, item.body)) + sum(map(size, item.shortcut or item.projection)) + 1
    if isinstance(item, Concat):
        return sum(size(i) for b in item.branches for i in b) + 1
    if isinstance(item, Call):
        return sum(map(size, item.concrete)) if item.concrete else sum(map(size, item.block.body))
    return sum(size(i) for c in item.concrete for i in c) if item.concrete else sum(map(size, item.body))


def _chains(items: list, blocks: list[Block]) -> Iterator[list]:
    """Every list of items written somewhere: the network, block bodies and everything nested."""
    stack = [items] + [b.body for b in blocks]
    while stack:
        chain = stack.pop()
        yield chain
        for item in chain:
            if isinstance(item, Residual):
                stack += [item.body] + ([item.shortcut] if item.shortcut else [])
            elif isinstance(item, Concat):
                stack += item.branches
            elif isinstance(item, Repeat):
                stack.append(item.body)


# ---- choosing and extracting a window


def _starts_block(item) -> bool:
    # A block starting with an activation or batchnorm reads badly: it belongs to the layer before.
    return not (isinstance(item, LayerItem) and REGISTRY[item.op].category == "elementwise")


def _is_call(item) -> bool:
    # A block of calls only groups other blocks (a "stage of two blocks"), which hides more than it
    # shows; blocks inside residuals and branches are another matter and stay allowed.
    return isinstance(item, Call) or isinstance(item, Repeat) and any(isinstance(i, Call) for i in item.body)


def _periodic(key: tuple) -> bool:
    """Whether the window is copies of a shorter one (that one is the block, called ``* n``)."""
    return any(len(key) % d == 0 and key == key[:d] * (len(key) // d) for d in range(1, len(key)))


def _best_window(chains: list[list]):
    occurrences: dict[tuple, list[tuple[int, int, int]]] = defaultdict(list)
    for c, chain in enumerate(chains):
        for length in range(1, MAX_WINDOW + 1):
            for start in range(len(chain) - length + 1):
                window = chain[start:start + length]
                if not _starts_block(window[0]) or any(map(_is_call, window)):
                    continue
                key = _signatures(window)
                if sum(map(size, window)) >= 2 and not _periodic(key):
                    occurrences[key].append((c, start, length))
    best, best_score = None, None
    for key, found in occurrences.items():
        chosen, last = [], {}
        for c, start, length in sorted(found):
            if start >= last.get(c, 0):
                chosen.append((c, start, length))
                last[c] = start + length
        if len(chosen) < 2:
            continue
        covered = sum(size(i) for c, s, n in chosen for i in chains[c][s:s + n])
        body = covered / len(chosen)
        if covered < MIN_GAIN * (len(chosen) + body):
            continue
        score = (round(covered - len(chosen) - body, 6), -chosen[0][2])
        if best_score is None or score > best_score:
            best, best_score = chosen, score
    return best


def _extract(chosen: list, chains: list[list], blocks: list[Block]) -> Block:
    windows = [chains[c][s:s + n] for c, s, n in chosen]
    columns = list(zip(*[_all_slots(w) for w in windows]))
    names = _name_slots(windows[0])
    params: list[str] = []
    values_of: dict[str, tuple] = {}
    body_values = []
    for column, slot in zip(columns, names):
        if len(set(map(_key, column))) == 1 and not isinstance(column[0], Param):
            body_values.append(column[0])
            continue
        same = next((p for p in params if values_of[p] == column), None)
        if same is not None:
            body_values.append(Param(same))
            continue
        multiple = next((p for p in params if _scale(values_of[p], column)), None)
        if multiple is not None:
            body_values.append(Param(multiple, _scale(values_of[multiple], column)))
            continue
        name = _unique(slot, params)
        params.append(name)
        values_of[name] = column
        body_values.append(Param(name))
    defaults = {}
    for name in params[1:]:  # the first parameter is the block's main argument: always written
        value, uses = Counter(map(_key, values_of[name])).most_common(1)[0]
        if uses >= DEFAULT_SHARE * len(windows) and not isinstance(value, Param):
            defaults[name] = next(v for v in values_of[name] if _key(v) == value)
    ordered = [p for p in params if p not in defaults] + [p for p in params if p in defaults]
    block = Block(_block_name(windows[0], blocks), ordered, defaults)
    shared = iter(body_values)
    block.body = [_rebuild(item, shared) for item in windows[0]]
    uses = sorted(enumerate(chosen), key=lambda use: (use[1][0], -use[1][1]))  # right to left in each chain
    for index, (c, start, length) in uses:
        args = [values_of[p][index] for p in ordered]
        chains[c][start:start + length] = [Call(block, args, windows[index])]
    return block


def _key(value: Any):
    return value if not isinstance(value, float) else round(value, 12)


def _scale(base: tuple, column: tuple) -> int | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in base + column):
        return None
    if column[0] % base[0]:
        return None
    ratio = column[0] // base[0]
    return ratio if ratio > 1 and all(c == b * ratio for b, c in zip(base, column)) else None


def _name_slots(window: list) -> list[str]:
    names = []
    for item in window:
        names += _slot_names(item)
    return names


def _slot_names(item) -> list[str]:
    if isinstance(item, LayerItem):
        return [_PARAM_NAMES.get(k, k) for k in item.values]
    if isinstance(item, Residual):
        return [n for i in item.body + (item.shortcut or []) for n in _slot_names(i)]
    if isinstance(item, Concat):
        return [n for b in item.branches for i in b for n in _slot_names(i)]
    if isinstance(item, Call):
        return list(item.block.params)
    return [n for i in item.body for n in _slot_names(i)] + ["n"]


def _unique(name: str, taken: list[str]) -> str:
    if name not in taken:
        return name
    number = 2
    while f"{name}{number}" in taken:
        number += 1
    return f"{name}{number}"


def _block_name(window: list, blocks: list[Block]) -> str:
    if any(isinstance(i, Residual) for i in window):
        base = "residual_block"
    elif any(isinstance(i, Concat) for i in window):
        base = "branches"
    elif any(isinstance(i, Repeat) for i in window):
        base = "stage"
    else:
        first = window[0]
        base = f"{first.op}_block" if isinstance(first, LayerItem) else f"{first.block.name}_group"
    names = [b.name for b in blocks]
    return _unique(base, names)


# ---- runs


def _repeat_runs(items: list) -> None:
    """Consecutive identical windows of plain layers (starting with a conv or fc) → ``repeat n``."""
    for chain in list(_chains(items, [])):
        start = 0
        while start < len(chain):
            best = None
            for length in range(1, 4):
                window = chain[start:start + length]
                if len(window) < length or not all(isinstance(i, LayerItem) for i in window):
                    break
                if REGISTRY[window[0].op].category != "anchor":
                    break
                count = 1
                while chain[start + count * length:start + (count + 1) * length] and _same(
                        chain[start + count * length:start + (count + 1) * length], window):
                    count += 1
                if count >= 2 and (best is None or count * length > best[0] * best[1]):
                    best = (count, length)
            if best is None:
                start += 1
                continue
            count, length = best
            concrete = [chain[start + k * length:start + (k + 1) * length] for k in range(count)]
            body = [_rebuild(i, iter(slots(i))) for i in concrete[0]]
            chain[start:start + count * length] = [Repeat(count, body, concrete)]
            start += 1


def _single_runs(chain: list) -> None:
    """A window shaped like a ``repeat``'s body, and followed by what follows that repeat, becomes
    ``repeat 1`` for now, so that VGG's one-convolution stages match its longer ones."""
    shapes = {(_signatures(item.body), signature(chain[i + 1])) for i, item in enumerate(chain[:-1])
              if isinstance(item, Repeat)}
    for body, after in shapes:
        start = 0
        while start + len(body) < len(chain):
            window = chain[start:start + len(body)]
            if all(isinstance(i, LayerItem) for i in window) and _signatures(window) == body \
                    and signature(chain[start + len(body)]) == after:
                chain[start:start + len(body)] = [Repeat(1, [_rebuild(i, iter(slots(i))) for i in window], [window])]
            start += 1


def _unwrap_single_runs(chain: list) -> None:
    """``repeat 1`` left outside any block is written as its layers again."""
    index = 0
    while index < len(chain):
        item = chain[index]
        if isinstance(item, Repeat) and item.n == 1:
            chain[index:index + 1] = item.concrete[0] if item.concrete else item.body
        index += 1


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(isinstance(x, LayerItem) and x.op == y.op and x.values == y.values for x, y in zip(a, b))


def _call_runs(chain: list) -> None:
    """Consecutive calls of one block with the same arguments → one call ``* n``."""
    start = 0
    while start < len(chain):
        item = chain[start]
        end = start + 1
        while (isinstance(item, Call) and end < len(chain) and isinstance(chain[end], Call)
               and chain[end].block is item.block and chain[end].args == item.args):
            end += 1
        if end - start >= 2:
            concrete = [[c] for c in chain[start:end]]
            chain[start:end] = [Repeat(end - start, [replace(item, concrete=[])], concrete)]
        start += 1


def _definition_order(blocks: list[Block]) -> list[Block]:
    """Blocks before the blocks that call them."""
    ordered: list[Block] = []

    def visit(block: Block) -> None:
        if any(b is block for b in ordered):
            return
        for chain in _chains(block.body, []):
            for item in chain:
                if isinstance(item, Call):
                    visit(item.block)
        ordered.append(block)

    for block in blocks:
        visit(block)
    return ordered
