"""Image folders: one subfolder per class, optional train/test splits, resizing and errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnlang.data import DataError, read_image_folder
from cnnlang.data.folder import fit_size


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _grey(value, size=(4, 6)):
    return np.full(size, value, dtype=np.uint8)


def test_classes_sorted_labels_by_index(tmp_path):
    _save(tmp_path / "dog" / "b.png", _grey(20))
    _save(tmp_path / "dog" / "a.png", _grey(10))
    _save(tmp_path / "cat" / "x.png", _grey(30))
    (tmp_path / "cat" / "notes.txt").write_text("not an image, ignored")
    images, labels, classes = read_image_folder(tmp_path)
    assert classes == ["cat", "dog"]
    assert list(labels) == [0, 1, 1] and labels.dtype == np.int64
    assert images.shape == (3, 1, 4, 6) and images.dtype == np.uint8
    assert [int(im[0, 0, 0]) for im in images] == [30, 10, 20]  # files sorted within a class


def test_colour_images_keep_channel_order(tmp_path):
    pixel = np.zeros((2, 3, 3), dtype=np.uint8)
    pixel[..., 0], pixel[..., 1], pixel[..., 2] = 200, 100, 50
    _save(tmp_path / "a" / "1.png", pixel)
    _save(tmp_path / "b" / "1.png", _grey(80, (2, 3)))
    images, _, _ = read_image_folder(tmp_path)  # one colour image makes the whole set RGB
    assert images.shape == (2, 3, 2, 3)
    assert list(images[0, :, 0, 0]) == [200, 100, 50] and list(images[1, :, 1, 2]) == [80, 80, 80]
    grey, _, _ = read_image_folder(tmp_path, channels=1)
    # Pillow's L = (299 R + 587 G + 114 B) / 1000, rounded.
    assert grey.shape == (2, 1, 2, 3) and grey[0, 0, 0, 0] == round((299 * 200 + 587 * 100 + 114 * 50) / 1000)


def test_train_and_test_or_val_splits(tmp_path):
    _save(tmp_path / "train" / "a" / "1.png", _grey(1))
    _save(tmp_path / "train" / "b" / "1.png", _grey(2))
    _save(tmp_path / "val" / "a" / "1.png", _grey(3))
    _save(tmp_path / "val" / "b" / "1.png", _grey(4))
    train, train_labels, classes = read_image_folder(tmp_path, "train")
    test, test_labels, _ = read_image_folder(tmp_path, "test")
    assert classes == ["a", "b"] and list(train[:, 0, 0, 0]) == [1, 2] and list(test[:, 0, 0, 0]) == [3, 4]


def test_no_test_split_is_an_error(tmp_path):
    _save(tmp_path / "a" / "1.png", _grey(1))
    with pytest.raises(DataError, match="no test/ or val/ subfolder"):
        read_image_folder(tmp_path, "test")


def test_different_sizes_need_a_target_size(tmp_path):
    _save(tmp_path / "a" / "1.png", _grey(1, (4, 4)))
    _save(tmp_path / "a" / "2.png", _grey(1, (4, 5)))
    with pytest.raises(DataError, match=r"a/2\.png: 4x5 pixels but 1\.png is 4x4"):
        read_image_folder(tmp_path)
    images, _, _ = read_image_folder(tmp_path, image_size=3)
    assert images.shape == (2, 1, 3, 3)


def test_resize_shorter_side_then_centre_crop():
    # 4 rows x 8 columns, columns numbered; to 2x2 halves both sides (shorter side 4 -> 2), giving
    # 2x4, and the centre crop keeps columns 1-2 of those 4.
    array = np.tile(np.arange(8, dtype=np.uint8) * 30, (4, 1))
    out = np.asarray(fit_size(Image.fromarray(array), (2, 2)))
    halved = np.asarray(Image.fromarray(array).resize((4, 2), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(out, halved[:, 1:3])
    assert out.shape == (2, 2)


def test_unreadable_image_names_the_file(tmp_path):
    _save(tmp_path / "a" / "1.png", _grey(1))
    (tmp_path / "a" / "2.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"a/2\.png: not a readable image"):
        read_image_folder(tmp_path)


def test_empty_class_folder(tmp_path):
    _save(tmp_path / "a" / "1.png", _grey(1))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"/b: empty class folder"):
        read_image_folder(tmp_path)


def test_no_classes(tmp_path):
    with pytest.raises(DataError, match="no class subfolders"):
        read_image_folder(tmp_path)
