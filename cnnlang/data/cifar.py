"""The CIFAR-10 binary format: records of 1 label byte and 3x32x32 pixel bytes (R, G, B planes,
each row-major), 10,000 records per batch file.

Read from the folder ``cifar-10-batches-bin/`` (or its parent), or straight from the official
``cifar-10-binary.tar.gz``: members are read into memory by name, never extracted to disk.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import DataError

ARCHIVE_NAME = "cifar-10-binary.tar.gz"
FOLDER_NAME = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
IMAGE_SHAPE = (3, 32, 32)
RECORD_SIZE = 1 + 3 * 32 * 32
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def split_files(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_FILES
    if split == "test":
        return TEST_FILES
    raise DataError(f"unknown split '{split}' (expected 'train' or 'test')")


def parse_records(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32 uint8) and labels (int64) of one batch file's bytes."""
    if len(data) == 0 or len(data) % RECORD_SIZE:
        whole = len(data) // RECORD_SIZE
        raise DataError(
            f"{name}: truncated or not a CIFAR-10 batch: expected a whole number of "
            f"{RECORD_SIZE:,}-byte records (1 label byte + 3x32x32 pixel bytes; 10,000 records = "
            f"{10_000 * RECORD_SIZE:,} bytes), found {len(data):,} bytes ({whole:,} records and "
            f"{len(data) - whole * RECORD_SIZE:,} bytes over)")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_SIZE)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= len(CLASSES):
        bad = int(np.argmax(labels >= len(CLASSES)))
        raise DataError(f"{name}: record {bad} has label {labels[bad]} (expected 0-{len(CLASSES) - 1})")
    images = records[:, 1:].reshape(-1, *IMAGE_SHAPE).copy()
    return images, labels


def parse_classes(text: str, name: str) -> list[str]:
    classes = [line.strip() for line in text.splitlines() if line.strip()]
    if len(classes) != len(CLASSES):
        raise DataError(f"{name}: expected {len(CLASSES)} class names, one a line, found {len(classes)}")
    return classes


def find_cifar(folder: Path) -> Path | None:
    """Where the CIFAR-10 binaries are under ``folder``: the batch folder itself, a
    ``cifar-10-batches-bin`` inside it, or the official tarball inside it; None if none is."""
    if folder.is_file() and folder.name.endswith((".tar.gz", ".tgz", ".tar")):
        return folder
    for candidate in (folder, folder / FOLDER_NAME):
        if candidate.is_dir() and any((candidate / name).is_file() for name in (*TRAIN_FILES, *TEST_FILES)):
            return candidate
    if (folder / ARCHIVE_NAME).is_file():
        return folder / ARCHIVE_NAME
    return None


def _read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """The regular-file members of ``archive`` whose base names are wanted, read into memory."""
    found: dict[str, bytes] = {}
    try:
        tar = tarfile.open(archive, "r:*")
    except tarfile.ReadError:
        # Its own message lists every compression it tried, one line each.
        raise DataError(f"{archive.name}: not a tar archive (plain, gzip, bzip2 or xz); download it again") from None
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive.name}: cannot read the tar archive ({error}); download it again") from None
    try:
        with tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if member.isfile() and base in wanted and base not in found:
                    stream = tar.extractfile(member)
                    if stream is not None:
                        found[base] = stream.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive.name}: cannot read the tar archive ({error}); download it again") from None
    return found


def _read_folder(folder: Path, wanted: set[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name in wanted:
        path = folder / name
        if path.is_file():
            try:
                found[name] = path.read_bytes()
            except OSError as error:
                raise DataError(f"{path}: cannot read: {error.strerror or error}") from None
    return found


def read_cifar10(source: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N x 3 x 32 x 32 uint8), labels (int64) and class names of one split, from a batch
    folder, its parent, or the tarball."""
    source = Path(source)
    files = split_files(split)
    location = find_cifar(source)
    if location is None:
        raise DataError(f"{source}: no CIFAR-10 binaries found: expected {', '.join(files)} in it or in "
                        f"{FOLDER_NAME}/, or {ARCHIVE_NAME}")
    wanted = {*files, META_FILE}
    found = _read_members(location, wanted) if location.is_file() else _read_folder(location, wanted)
    missing = [name for name in files if name not in found]
    if missing:
        raise DataError(f"{location}: missing CIFAR-10 file(s) {', '.join(missing)} for the {split} split")
    parts = [parse_records(found[name], name) for name in files]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    meta = found.get(META_FILE)
    classes = parse_classes(meta.decode("utf-8", "replace"), META_FILE) if meta is not None else list(CLASSES)
    return images, labels, classes
