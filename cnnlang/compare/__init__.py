"""The references of ``cnnlang bench --compare``: the same model, weights and input timed in
PyTorch (the layer twins, NCHW and channels-last) and in ONNX Runtime (cnnlang's own ONNX export),
each in a fresh process limited to cnnlang's thread count (:mod:`.worker`). Importing this package
imports neither framework."""

from __future__ import annotations

import importlib.util

from ..errors import UsageError

# reference name → (the modules it needs, what to install, its name in tables)
REFERENCES = {
    "torch": (("torch",), "pip install torch", "PyTorch"),
    "onnxruntime": (("onnxruntime", "onnx"), "pip install 'cnnlang[onnx]'", "ONNX Runtime"),
}


def parse_references(text: str) -> list[str]:
    """``"torch,onnxruntime"`` → the names, checked: each known, and its packages installed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in REFERENCES]
    if unknown or not names:
        raise UsageError(f"--compare takes a comma-separated list of {', '.join(REFERENCES)}; got '{text}'")
    for name in names:
        modules, install, _ = REFERENCES[name]
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            raise UsageError(f"--compare {name} needs {', '.join(missing)}, which is not installed: {install}")
    return list(dict.fromkeys(names))


def display_name(reference: str) -> str:
    return REFERENCES[reference][2]
