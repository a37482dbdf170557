"""Fixtures of the training tests: a small learnable synthetic dataset and a model for it."""

import pytest
from synthetic import MODEL, write_digits


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    return write_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.cnn"
    path.write_text(MODEL)
    return path
