"""``cnnlang import FILE.onnx -o MODEL.cnn``: an ONNX model as readable .cnn text."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "import", help="convert an ONNX file to a .cnn model",
        description="Convert an ONNX model to .cnn text: residuals and branches where the graph allows, "
        "repeated subgraphs as parameterised blocks, weights in cnnlang's names. Nothing in the file is executed. "
        "Needs the onnx extra: pip install 'cnnlang[onnx]'.",
    )
    parser.add_argument("file", metavar="FILE.onnx")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.cnn", help="where to write the model")
    parser.add_argument("--weights-out", metavar="W.safetensors", help="also write the weights, in cnnlang's names")
    parser.add_argument("--no-blocks", action="store_true", help="write every layer out instead of recovering blocks")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..files import write_text_atomically
    from ..interchange import UnsupportedModel
    from ..interchange.importer import import_onnx
    from ..runtime.network import WEIGHTS_FORMAT
    from ..runtime.weights import save_weights

    targets = [Path(args.output)] + ([Path(args.weights_out)] if args.weights_out else [])
    for target in targets:
        if target.exists() and not args.force:
            raise FileExistsError(f"{target} exists; pass --force to replace it")
    try:
        imported = import_onnx(args.file, blocks=not args.no_blocks)
    except UnsupportedModel as error:  # the file is fine; the model is beyond cnnlang: a model error
        print(f"cnnlang: error: {error}", file=sys.stderr)
        return 1
    write_text_atomically(args.output, imported.text)
    model = imported.model
    if args.weights_out:
        header = {"model": model.name, "format": WEIGHTS_FORMAT, "source": Path(args.file).name,
                  "source_sha256": hashlib.sha256(model.dump().encode()).hexdigest()}
        save_weights(args.weights_out, imported.weights, header, overwrite=args.force)
    totals = model.totals
    how = "" if imported.structured else " (as named tensors: the graph is not nested residuals and branches)"
    print(f"wrote {args.output}: {model.name}, {totals['params']:,} parameters, {totals['macs']:,} MACs{how}")
    if args.weights_out:
        print(f"wrote {args.weights_out}: {len(imported.weights)} arrays")
    return 0
