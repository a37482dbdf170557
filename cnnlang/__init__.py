"""cnnlang: a language and graph compiler for convolutional networks."""

from .errors import CnnError, Span
from .model import Model, ModelNotFound, load, zoo_names

__all__ = ["CnnError", "Model", "ModelNotFound", "Span", "load", "zoo_names"]
__version__ = "0.1.0"
