"""Native custom-op libraries: shared libraries built against the ONNX Runtime C API that export
``OrtStatus* RegisterCustomOps(OrtSessionOptions*, const OrtApiBase*)``.

Only paths that a plugin declaration names reach this module: a model file can name an op, never
a library to load.
"""

from __future__ import annotations

from pathlib import Path

from onnxforge.runtime.errors import PluginError


def _owners(path: str, registry) -> str:
    names = sorted({registry.owner[op.key] for op in registry.ops.values() if op.library and str(op.library) == path})
    return ", ".join(repr(n) for n in names) or "?"


def register_library(options, path: str, registry) -> None:
    """Load the library at ``path`` into ONNX Runtime ``options`` (once per options object)."""
    if path.endswith(("_extensions_pydll.so", "_extensions_pydll.pyd")) or "onnxruntime_extensions" in path:
        owners = "onnxruntime-extensions (Python kernels)"
    else:
        owners = f"plugin {_owners(path, registry)}"
        if not Path(path).is_file():
            raise PluginError(f"the native library {path} declared by {owners} does not exist")
    try:
        options.register_custom_ops_library(path)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PluginError(f"ONNX Runtime could not load the custom-op library {path} of {owners}: {text}") from None
