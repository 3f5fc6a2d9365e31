"""Model files: safe loading and atomic saving, external data, the model card, dtypes, weight files.

Owns everything about bytes on disk that make a model. May import: onnx, numpy, onnxforge.runtime.errors."""

from onnxforge.runtime.modelio.files import (
    METADATA_PREFIX,
    atomic_write_bytes,
    get_metadata,
    load_model,
    save_model,
    set_metadata,
)

__all__ = ["METADATA_PREFIX", "atomic_write_bytes", "get_metadata", "load_model", "save_model", "set_metadata"]
