"""Weight files without pickle: safetensors (``.safetensors``) or NumPy ``.npz`` (loaded with
``allow_pickle=False``). Writes are atomic (a temporary file in the same folder, then a rename),
and an existing file is only replaced when asked."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlang.errors import UsageError
from cnnlang.files import write_atomically

FORMATS = (".safetensors", ".npz")
# What a file's "format" metadata says it holds: a network's weights (Network.save) or a training
# checkpoint (cnnlang.train.checkpoint writes it; the runtime reads its weights, skipping the
# optimiser's slots, which are named with the prefix).
WEIGHTS_FORMAT = "cnnlang-weights-1"
CHECKPOINT_FORMAT = "cnnlang-checkpoint-1"
CHECKPOINT_OPTIMIZER_PREFIX = "optimizer/"


class WeightsError(UsageError):
    """A weight file that cannot be read, or that does not fit the model."""


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise WeightsError(f"{path}: weight files must end in .safetensors or .npz, not '{suffix or path.name}'")
    return suffix


def _readable(path: Path) -> str:
    suffix = _format(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file")
    return suffix


def save_weights(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, str], overwrite: bool = False) -> None:
    path = Path(path)
    suffix = _format(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--force) to replace it")
    contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}

    def write(temporary: str) -> None:
        if suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(contiguous, temporary, metadata=metadata)
        else:
            meta = {f"__meta__.{k}": np.array(v) for k, v in metadata.items()}
            with open(temporary, "wb") as handle:
                np.savez(handle, **contiguous, **meta)

    write_atomically(path, write)


def load_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) from a weight file; WeightsError when it is missing or malformed."""
    path = Path(path)
    suffix = _readable(path)
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            arrays, metadata = {}, {}
            with safe_open(str(path), framework="numpy") as handle:
                metadata = dict(handle.metadata() or {})
                for key in handle.keys():
                    arrays[key] = handle.get_tensor(key)
            return arrays, metadata
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files if not k.startswith("__meta__.")}
            metadata = {k[len("__meta__."):]: str(archive[k]) for k in archive.files if k.startswith("__meta__.")}
        for name, value in arrays.items():
            # A member not stored as .npy comes back as raw bytes (a pickle, say): never interpreted.
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                what = f"{value.dtype} array" if isinstance(value, np.ndarray) else "not a .npy array"
                raise WeightsError(f"{path}: member '{name}' is {what}; weight files hold numeric arrays only")
        return arrays, metadata
    except WeightsError:
        raise
    except Exception as error:  # the libraries raise many kinds for a damaged file
        raise WeightsError(f"{path}: not a readable {suffix} weight file ({type(error).__name__}: {error})") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """A weight file's metadata without reading its arrays (safetensors keeps it in the header;
    an .npz archive loads members lazily)."""
    path = Path(path)
    suffix = _readable(path)
    try:
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                return dict(handle.metadata() or {})
        with np.load(path, allow_pickle=False) as archive:
            return {k[len("__meta__."):]: str(archive[k]) for k in archive.files if k.startswith("__meta__.")}
    except Exception as error:  # the libraries raise many kinds for a damaged file
        raise WeightsError(f"{path}: not a readable {suffix} weight file ({type(error).__name__}: {error})") from None
