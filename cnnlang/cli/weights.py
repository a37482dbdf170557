"""``cnnlang weights import TORCH.safetensors --model MODEL -o OUT.safetensors``: a PyTorch
state_dict (saved with safetensors, never pickle) renamed to cnnlang's names."""

from __future__ import annotations

import argparse

from .common import input_size


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser("weights", help="convert weight files", description="Convert weight files.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importer = actions.add_parser(
        "import", help="rename a PyTorch state_dict to a model's names",
        description="Map a PyTorch state_dict saved with safetensors.torch.save_file onto MODEL by execution order, "
        "layer kind and shape, print the mapping, and write the weights in cnnlang's names. "
        "num_batches_tracked is ignored; .pth/pickle files are refused.",
    )
    importer.add_argument("file", metavar="TORCH.safetensors")
    importer.add_argument("--model", required=True, metavar="MODEL", help="a .cnn file or zoo model")
    importer.add_argument("--input", type=input_size,
                          metavar="CxHxW", help="the model's input size, when its fc layers depend on it")
    importer.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    importer.add_argument("--skip", action="append", default=[], metavar="PREFIX",
                          help="leave out PyTorch entries under this prefix (e.g. aux1 for GoogLeNet's auxiliary heads)")
    importer.add_argument("--force", action="store_true", help="replace OUT.safetensors if it exists")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..interchange.torch_names import map_state_dict
    from ..model import load
    from ..runtime.network import WEIGHTS_FORMAT
    from ..runtime.weights import WeightsError, load_weights, save_weights

    if Path(args.file).suffix.lower() != ".safetensors":
        raise WeightsError(f"{args.file}: PyTorch weights must be a .safetensors file (safetensors.torch.save_file); "
                           ".pth and other pickle files are refused, since loading them can run code")
    if Path(args.output).exists() and not args.force:
        raise FileExistsError(f"{args.output} exists; pass --force to replace it")
    model = load(args.model, input_shape=args.input)
    arrays, _ = load_weights(args.file)
    pairs, weights = map_state_dict(model, arrays, args.skip)
    width = max(len(p.torch_module) for p in pairs) if pairs else 0
    print(f"{'PyTorch':<{width}}  {'cnnlang':<24} shape")
    for pair in pairs:
        print(f"{pair.torch_module:<{width}}  {pair.node:<24} {'x'.join(map(str, pair.shape))}")
    save_weights(args.output, weights, {"model": model.name, "format": WEIGHTS_FORMAT, "source": Path(args.file).name},
                 overwrite=args.force)
    print(f"wrote {args.output}: {len(weights)} arrays for {model.name}")
    return 0
