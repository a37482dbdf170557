"""``cnnlang export MODEL -o FILE.onnx``: the model as an ONNX file for other tools."""

from __future__ import annotations

import argparse

from .common import add_model_argument, add_pass_options, load_model, selected_passes


def add_parser(commands) -> argparse.ArgumentParser:
    from ..interchange.export import DEFAULT_OPSET

    parser = commands.add_parser(
        "export", help="write the model as an ONNX file",
        description="Write MODEL as ONNX (standard operators, cnnlang's layer names; dropout is left out). "
        "Needs the onnx extra: pip install 'cnnlang[onnx]'.",
    )
    add_model_argument(parser)
    parser.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="where to write the ONNX file")
    parser.add_argument("--weights", metavar="FILE", help="weights saved by cnnlang; seeded random weights if absent")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N", help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--dynamic-batch", action="store_true", help="leave the batch size open (N) instead of 1")
    parser.add_argument("--functions", action="store_true", help="write each block as an ONNX local function")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random weights (default 0)")
    parser.add_argument("--force", action="store_true", help="replace FILE.onnx if it exists")
    add_pass_options(parser, default="none")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..interchange.export import export_model, save_onnx

    model = load_model(args)
    proto = export_model(
        model, weights=args.weights, opset=args.opset, passes=selected_passes(args),
        dynamic_batch=args.dynamic_batch, functions=args.functions, seed=args.seed,
    )
    save_onnx(proto, args.output, overwrite=args.force)
    counts = f"{len(proto.graph.node)} nodes" + (f", {len(proto.functions)} functions" if proto.functions else "")
    print(f"wrote {args.output}: {model.name}, opset {args.opset}, {counts}")
    return 0
