"""Draws zoo/lecture/sample.png, the lecture's sample image: generated, so it has no licence to
track. Shapes with hard edges (for the edge filter), a smooth shading (which the edge filter
removes) and a stripe pattern and speckle (for blur and sharpen). Run from the repository root:
``python docs/lecture/make_sample_image.py`` (tests/docs/test_lecture.py checks the shipped file
is what this draws)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
TARGET = Path(__file__).resolve().parents[2] / "zoo" / "lecture" / "sample.png"


def draw() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    shading = 60 + 80 * (0.6 * x + 0.4 * y)  # a smooth ramp, darker top left
    image = Image.fromarray(np.round(shading).astype(np.uint8), mode="L")
    pen = ImageDraw.Draw(image)
    pen.ellipse((14, 14, 62, 62), fill=230)                         # a bright disc
    pen.rectangle((74, 18, 112, 56), fill=25)                       # a dark square
    pen.polygon([(20, 112), (60, 112), (40, 76)], fill=200)         # a triangle
    for left in range(74, 114, 8):                                  # vertical stripes
        pen.rectangle((left, 76, left + 3, 112), fill=240)
    pixels = np.asarray(image, dtype=np.int16)
    speckle = np.random.default_rng(0).integers(-6, 7, size=pixels.shape)
    return Image.fromarray(np.clip(pixels + speckle, 0, 255).astype(np.uint8), mode="L")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else TARGET
    draw().save(target, format="PNG")
    print(f"wrote {target}")
