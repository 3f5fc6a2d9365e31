"""Model files: safe loading and atomic saving, external data, the model card, dtypes, weight files,
the loader's limits (``limits``, with ``sizes``: tensor sizes computed from constants) and the
checked ``.npy``/``.npz`` reader (``arrays``).

Owns everything about bytes on disk that make a model. May import: onnx, numpy, onnxforge.runtime.errors."""

from onnxforge.runtime.modelio.card import METADATA_PREFIX, ModelCard, get_metadata, set_metadata
from onnxforge.runtime.modelio.files import atomic_write_bytes, load_model, save_model

__all__ = ["METADATA_PREFIX", "ModelCard", "atomic_write_bytes", "get_metadata", "load_model", "save_model",
           "set_metadata"]
