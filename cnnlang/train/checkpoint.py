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
from cnnlang.runtime.weights import CHECKPOINT_FORMAT as FORMAT
from cnnlang.runtime.weights import CHECKPOINT_OPTIMIZER_PREFIX as OPTIMIZER_PREFIX
from cnnlang.runtime.weights import WeightsError, load_weights, read_metadata, save_weights


class CheckpointError(UsageError):
    """A checkpoint that cannot be read, or that belongs to another model or run."""


@dataclass
class Checkpoint:
    model: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    state: dict  # JSON: progress, optimiser scalars, schedule, normaliser, configuration
    metadata: dict[str, str]


def save_checkpoint(path: str | Path, network, optimizer_arrays: dict[str, np.ndarray], state: dict) -> None:
    """Write atomically, replacing the previous checkpoint of the same run."""
    arrays = dict(network.state())
    for name, array in optimizer_arrays.items():
        arrays[OPTIMIZER_PREFIX + name] = array
    metadata = {
        "format": FORMAT,
        "model": network.model.name,
        "source_sha256": network.source_hash(),
        "state": json.dumps(state, sort_keys=True),
    }
    if "normalizer" in state:
        # Also at the top level, where `cnnlang eval/run` read it from any weight file.
        metadata["normalizer"] = json.dumps(state["normalizer"])
    save_weights(path, arrays, metadata, overwrite=True)


def load_checkpoint(path: str | Path) -> Checkpoint:
    try:
        arrays, metadata = load_weights(path)
    except WeightsError as error:
        raise CheckpointError(str(error)) from None
    state = _state(path, metadata)
    model = {k: v for k, v in arrays.items() if not k.startswith(OPTIMIZER_PREFIX)}
    optimizer = {k[len(OPTIMIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(OPTIMIZER_PREFIX)}
    return Checkpoint(model, optimizer, state, metadata)


def checkpoint_state(path: str | Path) -> dict:
    """The training state of a checkpoint without reading its arrays."""
    try:
        metadata = read_metadata(path)
    except WeightsError as error:
        raise CheckpointError(str(error)) from None
    return _state(path, metadata)


def _state(path: str | Path, metadata: dict[str, str]) -> dict:
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnlang training checkpoint (format {metadata.get('format', 'missing')!r}, expected {FORMAT!r})")
    try:
        return json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's training state is damaged ({error})") from None


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
