"""One image reader (cnnlang/images.py): ``cnnlang run IMAGE`` (cnnlang/inputs.py) preprocesses an
image exactly as training on a folder of images (cnnlang/data/folder.py) does. Before, run
squashed a non-square image to the input size while training scaled it to cover and cropped."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlang.data import read_image_folder
from cnnlang.inputs import read_input


def test_run_input_equals_the_training_folder_image(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)  # wider than tall
    (tmp_path / "cats").mkdir()
    Image.fromarray(pixels).save(tmp_path / "cats" / "one.png")

    run = read_input(tmp_path / "cats" / "one.png", (3, 4, 4))
    images, _, _ = read_image_folder(tmp_path, image_size=4, channels=3)
    np.testing.assert_array_equal(run[0], images[0] / np.float32(255))

    squashed = np.asarray(Image.fromarray(pixels).resize((4, 4), Image.BILINEAR), np.float32) / 255
    assert not np.allclose(run[0], squashed.transpose(2, 0, 1))  # what run did before


def test_grey_input_from_a_colour_image(tmp_path):
    Image.fromarray(np.full((5, 5, 3), 255, np.uint8)).save(tmp_path / "white.png")
    np.testing.assert_array_equal(read_input(tmp_path / "white.png", (1, 3, 3)), np.ones((1, 1, 3, 3)))
