"""Training checkpoints: one safetensors file holding the model's parameters and buffers, the
optimiser's slot arrays, and (as JSON metadata) where training stands — no pickle.

The file is written to a temporary name and renamed, so a crash mid-write leaves the previous
checkpoint intact. Model tensors keep their plain names (``conv1.weight``), so a checkpoint also
loads as a weight file; optimiser slots live under ``optimizer/``.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np

from cnnlang.errors import UsageError
from cnnlang.runtime.weights import CHECKPOINT_FORMAT as FORMAT
from cnnlang.runtime.weights import CHECKPOINT_OPTIMIZER_PREFIX as OPTIMIZER_PREFIX
from cnnlang.runtime.weights import WeightsError, load_weights, read_metadata, save_weights

from .config import TrainConfig


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
        state = json.loads(metadata["state"])
    except (KeyError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: the checkpoint's training state is damaged ({error})") from None
    _check_state(state, path)
    return state


# The training state's parts, each checked before any of it is used: a tampered or damaged
# checkpoint is refused with what is wrong, never half-restored.
_PARTS = ("progress", "optimizer", "schedule", "normalizer", "config")
# JSON types of the annotations used by TrainConfig and the trainer's Progress.
_JSON_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
               "tuple[int, ...]": (list,)}


def _check_state(state: object, path: str | Path) -> None:
    def damaged(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: the checkpoint's training state is damaged: {what}")

    if not isinstance(state, dict):
        raise damaged("expected a mapping")
    missing = [part for part in _PARTS if part not in state]
    unknown = [part for part in state if part not in _PARTS]
    if missing or unknown:
        raise damaged("; ".join(filter(None, [missing and f"no {', '.join(missing)}", unknown and f"unknown {', '.join(map(repr, unknown))}"])))
    for part in _PARTS:
        if not isinstance(state[part], dict):
            raise damaged(f"{part} is not a mapping")
    for part in ("optimizer", "schedule"):
        _check_scalars(state[part], part, damaged)
    check_fields(state["config"], TrainConfig, "config", path)


def _check_scalars(values: dict, where: str, damaged) -> None:
    """Optimiser and schedule state: a kind, then numbers (or lists of them), nested states."""
    for key, value in values.items():
        if key == "kind":
            ok = isinstance(value, str)
        elif isinstance(value, dict):
            _check_scalars(value, f"{where}.{key}", damaged)
            ok = True
        elif isinstance(value, list):
            ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        else:
            ok = value is None or isinstance(value, (int, float))
        if not ok:
            raise damaged(f"{where}.{key} is {value!r}")


def check_fields(data: dict, schema: type, where: str, path: str | Path) -> None:
    """``data`` has exactly the fields of dataclass ``schema`` (defaulted ones may be absent),
    each of its annotated JSON type."""
    known = {f.name: f for f in fields(schema)}
    problems = [f"unknown {key!r}" for key in data if key not in known]
    for name, field in known.items():
        if name not in data:
            if field.default is MISSING:
                problems.append(f"no {name!r}")
            continue
        allowed = tuple(t for part in str(field.type).split(" | ") for t in _JSON_TYPES.get(part.strip(), (object,)))
        value = data[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            problems.append(f"{name!r} is {value!r}")
    if problems:
        raise CheckpointError(f"{path}: the checkpoint's training state is damaged: {where}: {', '.join(problems)}")


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
