"""Shared by the interchange tests: outputs compared with ONNX Runtime's (which the ONNX test
modules import with pytest.importorskip, so they skip without the onnx extra)."""

from __future__ import annotations

import numpy as np

TOLERANCE = 1e-5  # relative, in float32, as the issue asks


def run_onnx(proto_or_path, x: np.ndarray) -> np.ndarray:
    import onnxruntime

    source = proto_or_path.SerializeToString() if hasattr(proto_or_path, "SerializeToString") else str(proto_or_path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # the CI machine has 2 cores shared with Numba
    session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude of the expected output."""
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


def random_input(shape, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
