"""CUDA ops: Op subclasses registered with ``@register(..., backend="cuda")``, one module per
layer family (the CPU's names). Importing the package imports every module in it, so a new family
needs no line here; the CUDA backend imports it when first created."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
