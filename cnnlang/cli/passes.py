"""``cnnlang passes MODEL``: what each optimisation pass changed, where, and what it declined."""

from __future__ import annotations

import argparse

import networkx as nx

from .. import ir
from ..errors import UsageError
from ..model import Model
from ..passes.optimise import PASS_NAMES, optimise
from ..report import peak_memory_line
from .common import add_model_argument, add_pass_options, load_model, selected_passes

SHOWN_PER_PASS = 20


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "passes", help="what the optimisation passes do to a model",
        description=(
            "Run the optimisation passes (" + ", ".join(PASS_NAMES) + ") and list, by source line, "
            "what each changed and what it declined and why; or print the IR before or after a pass."
        ),
    )
    add_model_argument(parser)
    add_pass_options(parser, default="all")
    parser.add_argument("--dump-ir", metavar="WHEN", help="print the IR instead: 'before' (no passes) or 'after=PASS'")
    parser.add_argument("--format", choices=("text", "dot"), default="text", help="the --dump-ir format (default: text)")
    parser.add_argument("--verbose", action="store_true", help=f"list every entry, not the first {SHOWN_PER_PASS} per pass")
    return parser


def run(args: argparse.Namespace) -> int:
    chosen = selected_passes(args)
    dump_after = _dump_point(args, chosen)
    model = load_model(args)
    if dump_after is not None:
        names = chosen[: chosen.index(dump_after) + 1] if dump_after != "before" else []
        graph = optimise(model.graph, names) if names else model.graph
        print(_dump(Model(graph, model.source), args.format), end="")
        return 0
    graph = optimise(model.graph, chosen)
    print("\n".join(report_lines(model.graph, graph, chosen, args.verbose)))
    return 0


def _dump_point(args: argparse.Namespace, chosen: list[str]) -> str | None:
    """The pass after which to dump the IR ('before': none), or None for the report."""
    if args.dump_ir is None:
        if args.format != "text":
            raise UsageError("--format applies to --dump-ir; add '--dump-ir after=PASS' or '--dump-ir before'")
        return None
    if args.dump_ir == "before":
        return "before"
    name = args.dump_ir[len("after="):] if args.dump_ir.startswith("after=") else None
    if name not in PASS_NAMES:
        raise UsageError(f"--dump-ir takes 'before' or 'after=PASS' with PASS one of: {', '.join(PASS_NAMES)}; "
                         f"got '{args.dump_ir}'")
    if name not in chosen:
        raise UsageError(f"--dump-ir after={name}: that pass is not among those run ({', '.join(chosen) or 'none'})")
    return name


def _dump(model: Model, fmt: str) -> str:
    if fmt == "dot":
        from ..render import to_dot

        return to_dot(model)
    return ir.dump(model.graph) + "\n"


def report_lines(original: nx.DiGraph, graph: nx.DiGraph, chosen: list[str], verbose: bool = False) -> list[str]:
    """The report: per pass, its counts and one line per entry; then node counts and memory."""
    out = [f"{graph.graph['name']}: {len(chosen)} of {len(PASS_NAMES)} passes"
           + (f" ({', '.join(chosen)})" if chosen and len(chosen) < len(PASS_NAMES) else "")]
    log = graph.graph.get("pass_log", [])
    for name in chosen:
        entries = [e for e in log if e["pass"] == name]
        changed = [e for e in entries if e["status"] == "changed"]
        declined = [e for e in entries if e["status"] == "skipped"]
        if not entries:
            out.append(f"\n{name}: nothing to do")
            continue
        out.append(f"\n{name}: {len(changed)} changed, {len(declined)} declined")
        shown = entries if verbose else entries[:SHOWN_PER_PASS]
        out += [f"  {e['where']}: {_entry_text(e)}" for e in shown]
        if len(shown) < len(entries):
            out.append(f"  … and {len(entries) - len(shown)} more (--verbose lists them all)")
    out.append(f"\nlayers: {original.number_of_nodes() - 1} before, {graph.number_of_nodes() - 1} after")
    if "memory" in graph.graph:
        out.append(peak_memory_line(graph.graph["memory"]))
    else:
        out.append("peak activation memory: not planned (plan-memory was not run)")
    return out


def _entry_text(entry: dict) -> str:
    """The message with its node named instead of 'op at line N' (the line is already shown)."""
    message, node = entry["message"], entry["node"]
    head, _, rest = message.partition(f" at line {entry['line']}")
    if rest and " " not in head:
        text = f"{node}{rest}"
    else:
        text = f"{node}: {message}"
    return f"{text}  [declined]" if entry["status"] == "skipped" else text
