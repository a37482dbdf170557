"""Datasets: file formats, downloads with checksums, transforms and batching.

``load_dataset("mnist")`` gives a :class:`Dataset` (uint8 N x C x H x W images, int64 labels);
``fit_to_input`` adapts it to a network's input, ``Normalizer`` and ``Batches`` turn it into
reproducible float mini-batches.
"""

from .batches import Augment, Batches, split_validation
from .cifar import read_cifar10
from .datasets import Dataset, load_dataset
from .download import KNOWN_DATASETS, cache_dir, download_dataset
from .errors import DataError
from .folder import read_image_folder
from .idx import read_idx, write_idx
from .transforms import Normalizer, fit_to_input, random_crop, random_flip

__all__ = [
    "Augment", "Batches", "DataError", "Dataset", "KNOWN_DATASETS", "Normalizer", "cache_dir", "download_dataset",
    "fit_to_input", "load_dataset", "random_crop", "random_flip", "read_cifar10", "read_idx", "read_image_folder",
    "split_validation", "write_idx",
]
