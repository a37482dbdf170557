"""``cnnlang eval MODEL --weights W --data SPEC``: accuracy, top-5, loss and the confusion matrix."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_device_option, add_model_argument, device_backend, load_model


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "eval", help="measure a trained model's accuracy on a dataset",
        description="Evaluate MODEL with trained weights (a weight file or a training checkpoint) on a dataset "
        "split: loss, top-1 and top-5 accuracy, and the confusion matrix.",
    )
    add_model_argument(parser)  # MODEL, and --input for the size it was trained at
    parser.add_argument("--weights", required=True, metavar="FILE", help="best/last.safetensors or checkpoint.safetensors from `cnnlang train`")
    parser.add_argument("--data", required=True, metavar="SPEC", help="mnist, fashion-mnist, cifar10, or a folder")
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--data-dir", metavar="DIR", help="where named datasets are looked for first")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading a missing dataset")
    parser.add_argument("--batch", type=int, default=256, metavar="N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_device_option(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here: the runtime (numba) is slow to load, and other commands do not need it.
    from ..data import Normalizer, load_dataset
    from ..runtime.weights import WeightsError
    from ..train.evaluate import evaluate

    backend = device_backend(args)
    model = load_model(args)
    network = model.build(backend=backend)
    metadata = network.load(args.weights)
    for note in network.load_notes:
        print(f"note: {note}", file=sys.stderr)
    dataset = load_dataset(args.data, args.split, data_dir=args.data_dir, download=not args.no_download)
    if model.output_shape[0] != len(dataset.classes):  # before fitting, which may be large
        raise WeightsError(f"model '{model.name}' outputs {model.output_shape[0]} scores but the data has {len(dataset.classes)} classes")
    dataset = dataset.fitted(model.input_shape)
    normalizer = Normalizer.from_metadata(metadata)
    if normalizer is None:
        train = load_dataset(args.data, "train", data_dir=args.data_dir, download=not args.no_download)
        normalizer = Normalizer.from_images(train.fitted(model.input_shape).images)
        print(f"note: {args.weights} records no input normalisation; using the training split's mean and std", file=sys.stderr)
    network.eval()
    result = evaluate(network, dataset, normalizer, args.batch)
    if args.json:
        print(json.dumps({"model": model.name, "weights": args.weights, "data": args.data, "split": args.split,
                          "examples": result.count, "loss": result.loss, "accuracy": result.accuracy,
                          "top5": result.top5, "confusion": result.confusion.to_json()}, indent=2))
        return 0
    print(f"{model.name} on {args.data} ({args.split}, {result.count:,} examples)")
    outputs = network.output_names
    if len(outputs) > 1:
        print(f"output  '{outputs[0]}' (the first of the outputs {', '.join(outputs)}) is the one evaluated")
    print(f"accuracy {result.accuracy:.2%}   top-5 {result.top5:.2%}   loss {result.loss:.4f}")
    print(result.confusion.body_text(dataset.classes))
    return 0
