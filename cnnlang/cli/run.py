"""``cnnlang run MODEL``: one forward pass on a given or random input, with the top classes."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ..data.transforms import Normalizer
from ..errors import UsageError
from ..feature_maps import check_printable, check_saveable, format_values, save_channels
from ..inputs import is_image, read_input
from ..memory import check_fits
from ..train.losses import log_softmax
from ..layers import format_shape
from ..model import load
from .common import add_device_option, add_pass_options, device_backend, input_size, selected_passes


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "run", help="run a forward pass and show the top classes",
        description="Run MODEL forward on an input file (.npy or an image) or on random input, and show the "
        "output shape, the top-k classes and the time per image.",
    )
    parser.add_argument("model", metavar="MODEL", help="a .cnn file, or the name of a zoo model (see 'cnnlang zoo')")
    parser.add_argument(
        "--input", metavar="FILE|CxHxW",
        help="a .npy array (C x H x W or N x C x H x W) or an image to run on; or a size such as 3x64x64 "
        "to run random input of that size instead of the declared one; or the input's values, comma-separated "
        "(1.0,1.1,...); zoo:NAME names a file shipped in the zoo (zoo:lecture/sample.png). "
        "Random input of the declared size if absent",
    )
    parser.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of the random input (default 1)")
    parser.add_argument("--weights", metavar="FILE", help="weights saved by cnnlang (.safetensors or .npz); seeded random weights if absent")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random weights and input (default 0)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="how many classes to show (default 5)")
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="timed passes after the first (default 3)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    add_device_option(parser)
    add_pass_options(parser, default="all")
    add_output_options(parser)
    return parser


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--print`` and ``--save-output``: look at the output itself, not only its summary."""
    parser.add_argument("--print", action="store_true", dest="print_values",
                        help="print every output value (outputs of up to 1,024 values)")
    parser.add_argument("--save-output", metavar="OUT.png",
                        help="write the output's channels (C x H x W) as a grid in a greyscale PNG")
    parser.add_argument("--force", action="store_true", help="let --save-output overwrite an existing file")


def check_output_options(args: argparse.Namespace, output_shape: tuple[int, ...], batch: int) -> None:
    """Refuse an impossible --print or --save-output before the (maybe long) forward pass."""
    if args.print_values:
        check_printable(output_shape, batch)
    if args.save_output:
        check_saveable(output_shape, batch, args.save_output, args.force)


def show_output(args: argparse.Namespace, y: np.ndarray) -> None:
    if args.print_values:
        print("\n".join(format_values(y)))
    if args.save_output:
        print(f"saved   {save_channels(y[0], args.save_output)}")


def split_input(text: str | None) -> tuple[str | None, tuple[int, ...] | None]:
    """``--input`` names a file, or (when it is no file and reads as CxHxW) an input size."""
    if text is None or Path(text).exists():
        return text, None
    try:
        return None, input_size(text)
    except argparse.ArgumentTypeError:
        return text, None


def _initial_weights(model, seed: int) -> str:
    """Which layers' weights are written in the model (fixed) and which are drawn at random."""
    graph, written, drawn = model.graph, [], []
    for node, data in graph.nodes(data=True):
        layer = data["layer"]
        if layer is None or "weight" not in layer.param_shapes([graph.nodes[i]["shape"] for i in data["inputs"]]):
            continue
        (written if getattr(layer, "weights", None) is not None else drawn).append(node)
    randomly = f"random (He/Xavier, seed {seed})"
    if not written:
        return randomly
    return f"written in the model: {', '.join(written)}; " + (f"{randomly}: {', '.join(drawn)}" if drawn else "none random")


def _print_output(model, name: str, y: np.ndarray, top: int) -> None:
    print(f"output  {y.shape[0]} x {format_shape(y.shape[1:])} ('{name}')")
    if y.ndim == 2:
        probabilities = y if model.graph.nodes[name]["op"] == "softmax" else np.exp(log_softmax(y.astype(np.float64)))
        k = min(top, y.shape[1])
        for index, row in enumerate(probabilities):
            best = np.argsort(-row, kind="stable")[:k]
            ranked = "  ".join(f"{c}: {row[c]:.3f}" for c in best)
            print(f"  example {index}: top-{k} class: probability  {ranked}")
    else:
        print(f"  values: mean {y.mean():.4g}, std {y.std():.4g}, min {y.min():.4g}, max {y.max():.4g}")


def run(args: argparse.Namespace) -> int:
    if args.batch < 1 or args.top < 1 or args.repeat < 0:
        raise UsageError("--batch and --top must be at least 1, --repeat at least 0")
    passes = selected_passes(args)
    backend = device_backend(args)
    started = time.perf_counter()
    input_file, size = split_input(args.input)
    model = load(args.model, input_shape=size)
    check_fits(model, args.batch, args.dtype)  # before allocating anything
    if input_file:
        x = read_input(input_file, model.input_shape)
        source = input_file
    else:
        x = np.random.default_rng(args.seed).standard_normal((args.batch, *model.input_shape), dtype=args.dtype)
        source = f"random normal, seed {args.seed}"
    check_output_options(args, model.output_shape, x.shape[0])
    network = model.build(seed=args.seed, dtype=args.dtype, passes=passes, backend=backend)
    weights = args.weights or _initial_weights(model, args.seed)
    if args.weights:
        normalizer = Normalizer.from_metadata(network.load(args.weights))
        for note in network.load_notes:
            print(f"note: {note}", file=sys.stderr)
        if normalizer is not None and input_file and is_image(input_file):
            # An image must be scaled the way the training images were, or trained weights see nonsense.
            x = normalizer(x * 255.0, np.float64)
            source += ", normalised as in training"
    ready = time.perf_counter() - started
    print(f"{model.name} ({model.source}), {args.dtype}" + ("" if backend.name == "cpu" else f", on {backend.name}"))
    print(f"input   {x.shape[0]} x {format_shape(model.input_shape)} ({source})")
    print(f"weights {weights}")
    print(f"passes  {', '.join(passes) if passes else 'none'}")

    first = time.perf_counter()
    y = network.forward(x)
    first = time.perf_counter() - first
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        network.forward(x)
        times.append(time.perf_counter() - start)
    for name, value in network.outputs().items():
        _print_output(model, name, value, args.top)
    show_output(args, y)
    batch = x.shape[0]
    print(f"start   {ready:.2f} s to load, compile and initialise; first pass {first * 1000:.1f} ms (loads or compiles kernels)")
    if times:
        median = statistics.median(times)
        print(f"time    {median * 1000:.2f} ms per batch, {median * 1000 / batch:.2f} ms per image "
              f"(median of {len(times)}), {batch / median:.1f} images/s")
    return 0
