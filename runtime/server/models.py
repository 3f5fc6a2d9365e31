"""What the server offers: :class:`ServedModel` and the names given to model files and folders.

A model file is named after its file name without ``.onnx``; a folder serves every ``.onnx`` in
it, except a training run folder (``onnxforge train``'s ``--out``: ``model.onnx`` beside
``source.onnx``, ``checkpoint`` or ``metrics.json``), which serves its trained ``model.onnx``
only, named after the folder (``runs/pets`` serves ``pets``; ``source.onnx``, the untrained start,
is not served).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from onnxforge.runtime.errors import ConfigError, ModelError
from onnxforge.runtime.inference.session import load
from onnxforge.runtime.server.datatypes import tensor_metadata

__all__ = ["ServedModel", "find_models", "load_models", "is_run_folder", "VERSION"]

VERSION = "1"
RUN_MODEL = "model.onnx"  # the trained inference model of a run folder
RUN_MARKERS = ("source.onnx", "checkpoint", "metrics.json")  # what only a run folder holds beside it


@dataclass
class ServedModel:
    """One version of a model the server offers: its name, session and version; ``parameters``
    say more where there is more to say (the epoch a run folder's model comes from, its metric)."""

    name: str
    session: Any  # a Session, or an application's own object with its inputs, outputs and run
    path: str | None = None
    version: str = VERSION
    parameters: dict = field(default_factory=dict)

    def metadata(self, versions: list[str] | None = None) -> dict:
        doc: dict[str, Any] = {
            "name": self.name,
            "versions": list(versions or [self.version]),
            "platform": "onnxruntime_onnx",
            "inputs": [tensor_metadata(i) for i in self.session.inputs],
            "outputs": [tensor_metadata(o) for o in self.session.outputs],
        }
        if self.parameters:
            doc["parameters"] = dict(self.parameters)
        return doc

    def signature(self) -> tuple:
        """Names, datatypes and shapes of the inputs and outputs: what a replacement must match."""
        return tuple((io.name, str(io.dtype), tuple(io.shape)) for io in [*self.session.inputs, *self.session.outputs])


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a training run folder: its ``model.onnx`` beside a run's own files."""
    return (path / RUN_MODEL).is_file() and any((path / name).exists() for name in RUN_MARKERS)


def _named_files(path: Path) -> list[tuple[str, Path]]:
    if path.is_dir():
        if is_run_folder(path):
            return [(path.resolve().name, path / RUN_MODEL)]
        files = sorted(p for p in path.iterdir() if p.suffix == ".onnx" and p.is_file())
        if not files:
            raise ModelError(f"folder '{path}' holds no .onnx files to serve")
    elif path.is_file():
        files = [path]
    else:
        raise ModelError(f"'{path}' does not exist; give .onnx files or folders that hold them")
    return [(f.name[: -len(".onnx")] if f.name.endswith(".onnx") else f.name, f) for f in files]


def find_models(paths) -> dict[str, Path]:
    """``{name: file}`` for model files and folders (a folder gives each ``.onnx`` in it, a run
    folder its trained model under the folder's name)."""
    found: dict[str, Path] = {}
    for raw in paths:
        for name, file in _named_files(Path(raw)):
            if name in found and found[name].resolve() != file.resolve():
                raise ConfigError(f"two models would be named '{name}' ({found[name]} and {file}); "
                                  f"rename one or serve them separately")
            found[name] = file
    if not found:
        raise ModelError("no models to serve; give .onnx files or folders that hold them")
    return found


def load_models(paths, *, device: str, threads: int | None) -> dict[str, ServedModel]:
    return {name: ServedModel(name, load(file, device=device, threads=threads), str(file))
            for name, file in find_models(paths).items()}
