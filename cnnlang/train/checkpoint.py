"""Training checkpoints: one safetensors file holding the model's parameters and buffers, the
optimiser's slot arrays, and (as JSON metadata) where training stands — no pickle.

The file is written to a temporary name and renamed, so a crash mid-write leaves the previous
checkpoint intact. Model tensors keep their plain names (``conv1.weight``), so a checkpoint also
loads as a weight file; optimiser slots live under ``optimizer/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlang.errors import UsageError
from cnnlang.runtime.network import CHECKPOINT_FORMAT as FORMAT
from cnnlang.runtime.network import CHECKPOINT_OPTIMIZER_PREFIX as OPTIMIZER_PREFIX
from cnnlang.runtime.weights import WeightsError, load_weights, save_weights


class CheckpointError(UsageError):
    """A checkpoint that cannot be read, or that belongs to another model or run."""


@dataclass
class Checkpoint:
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    state: dict  # JSON: progress, optimiser scalars, schedule, normaliser, configuration
    metadata: dict[str, str]


def save_checkpoint(
    path: str | Path,
    model_state: dict[str, np.ndarray],
    optimizer_arrays: dict[str, np.ndarray],
    state: dict,
    model_name: str,
    source_sha256: str,
) -> None:
    """Write atomically, replacing the previous checkpoint of the same run."""
    arrays = dict(model_state)
    for name, array in optimizer_arrays.items():
        arrays[OPTIMIZER_PREFIX + name] = array
    metadata = {
        "format": FORMAT,
        "model": model_name,
        "source_sha256": source_sha256,
        "state": json.dumps(state, sort_keys=True),
    }
    if "normalizer" in state:
        # Also at the top level, so `cnnlang eval` reads it the same way from a weights file.
        metadata["normalizer"] = json.dumps(state["normalizer"])
    save_weights(path, arrays, metadata, overwrite=True)


def load_checkpoint(path: str | Path) -> Checkpoint:
    try:
        arrays, metadata = load_weights(path)
    except WeightsError as error:
        raise CheckpointError(str(error)) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlang training checkpoint (format {metadata.get('format', 'missing')!r}, expected {FORMAT!r})")
    try:
        state = json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's training state is damaged ({error})") from None
    model = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    optimizer = {k[len(OPTIMIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    return Checkpoint(model, optimizer, state, metadata)


def check_source(checkpoint: Checkpoint, path: str | Path, model_name: str, source_sha256: str) -> None:
    """A checkpoint resumes only the model it was trained from, unchanged."""
    if checkpoint.metadata.get("model") != model_name:
        raise CheckpointError(f"{path} was trained from model '{checkpoint.metadata.get('model')}', not '{model_name}'")
    if checkpoint.metadata.get("source_sha256") != source_sha256:
        raise CheckpointError(
            f"{path}: the model's source changed since this checkpoint was written "
            f"(sha256 {checkpoint.metadata.get('source_sha256', '?')[:12]}…, now {source_sha256[:12]}…); "
            "resuming would mix two different networks"
        )


def save_model_weights(path: str | Path, model_state: dict[str, np.ndarray], model_name: str, source_sha256: str,
                       normalizer: dict | None) -> None:
    """A plain weight file (what `cnnlang run/eval --weights` read), with the normalisation the
    network was trained with."""
    metadata = {"format": "cnnlang-weights-1", "model": model_name, "source_sha256": source_sha256}
    if normalizer is not None:
        metadata["normalizer"] = json.dumps(normalizer)
    save_weights(path, model_state, metadata, overwrite=True)
