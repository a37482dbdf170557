"""Looking at a network's output: its channels as one greyscale image, or its values as text."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import UsageError
from .files import write_atomically
from .layers import format_shape

GAP = 2  # white pixels between the channels of the grid
MOST_PRINTED = 1024  # values; beyond this, --print would bury the rest of the output


def grid_shape(channels: int) -> tuple[int, int]:
    """Rows and columns for a grid of channels: one row for up to four, else about square."""
    columns = channels if channels <= 4 else math.ceil(math.sqrt(channels))
    return math.ceil(channels / columns), columns


def check_saveable(output_shape: tuple[int, ...], batch: int, path: str | Path, force: bool) -> None:
    """Refuse before the forward pass what :func:`save_channels` could not write."""
    if len(output_shape) != 3:
        raise UsageError(
            f"--save-output draws a C x H x W output as images, but this model's output is "
            f"{format_shape(output_shape)}; use --print to see its values"
        )
    if batch != 1:
        raise UsageError(f"--save-output draws one example, but the input holds {batch}")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"{path}: --save-output writes a .png file")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; give --force to overwrite it")


def save_channels(output: np.ndarray, path: str | Path) -> str:
    """Write the channels of one C x H x W output as a grid in a greyscale PNG, each channel
    stretched from its own minimum (black) to its maximum (white); a flat channel is mid-grey.
    Returns a line saying what was written."""
    from PIL import Image

    channels, height, width = output.shape
    rows, columns = grid_shape(channels)
    canvas = np.full((rows * (height + GAP) - GAP, columns * (width + GAP) - GAP), 255, np.uint8)
    for index, channel in enumerate(output.astype(np.float64)):
        low, high = channel.min(), channel.max()
        scaled = (channel - low) / (high - low) if high > low else np.full_like(channel, 0.5)
        top, left = (index // columns) * (height + GAP), (index % columns) * (width + GAP)
        canvas[top:top + height, left:left + width] = np.round(scaled * 255).astype(np.uint8)
    write_atomically(path, lambda temporary: Image.fromarray(canvas, mode="L").save(temporary, format="PNG"))
    return (f"{path}: {channels} channel{'s' if channels > 1 else ''} of {height}x{width} in a {rows}x{columns} "
            "grid, each from its minimum (black) to its maximum (white)")


def check_printable(output_shape: tuple[int, ...], batch: int) -> None:
    count = batch * math.prod(output_shape)
    if count > MOST_PRINTED:
        raise UsageError(
            f"--print shows at most {MOST_PRINTED:,} values, but this output holds {count:,} "
            f"({batch} x {format_shape(output_shape)}); use --save-output to see it as images"
        )


def format_values(output: np.ndarray) -> list[str]:
    """Lines showing every value of a batch of outputs: per example, per channel, one line per row."""
    lines = []
    for index, example in enumerate(output):
        lines.append(f"  example {index}:")
        if example.ndim == 1:
            lines.append("    " + _row(example))
            continue
        for channel, values in enumerate(example):
            rows = values.reshape(-1, values.shape[-1]) if values.ndim > 1 else values[None]
            cells = [[_number(v) for v in row] for row in rows]
            width = max(len(cell) for row in cells for cell in row)
            lines.append(f"    channel {channel}:")
            lines.extend("      " + " ".join(cell.rjust(width) for cell in row) for row in cells)
    return lines


def _row(values: np.ndarray) -> str:
    return " ".join(_number(v) for v in values)


def _number(value: float) -> str:
    """Four decimals at most, without trailing zeros: 1.811, 44, -0.5."""
    text = f"{float(value):.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text
