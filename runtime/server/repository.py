"""The model repository: every model the server offers, by name and version, and how that changes.

A folder given to ``onnxforge serve`` is read in Triton's model-repository layout, beside what
``serve`` always took::

    DIR/NAME/VERSION/model.onnx   version VERSION (a whole number) of model NAME
    DIR/NAME.onnx                 model NAME (version 1)
    DIR/RUN/                      a training run folder: its model.onnx, named RUN

(``serve RUN`` or ``serve FILE.onnx`` serve that run or file, as before.) A request without a
version gets the newest one. :class:`Repository` loads, reloads (``load``) and unloads models;
every change is published by replacing one dict, so a request sees the old model or the new one,
whole, and one that already holds the old one finishes on it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from onnxforge.runtime.errors import ConfigError, ModelError, NotFoundError, OnnxforgeError, RunTimeoutError
from onnxforge.runtime.inference.session import load
from onnxforge.runtime.server.models import RUN_MODEL, ServedModel, is_run_folder
from onnxforge.runtime.server.deadlines import warm_within
from onnxforge.runtime.server.runs import WAITING, epoch_of, run_parameters, verdict

__all__ = ["Repository", "Source", "scan", "newest"]

log = logging.getLogger("onnxforge.serve")
TRITON_FILE = "model.onnx"


@dataclass(frozen=True)
class Source:
    """Where one version of a model comes from: ``version`` is fixed by a Triton version folder,
    else ``None`` (the server numbers it); ``run`` is the run folder of a run's model."""

    name: str
    path: Path
    version: str | None = None
    run: Path | None = None


def _triton_versions(folder: Path) -> list[Source]:
    return [Source(folder.name, v / TRITON_FILE, v.name) for v in sorted(folder.iterdir())
            if v.is_dir() and v.name.isdigit() and (v / TRITON_FILE).is_file()]


def _sources_in(path: Path) -> list[Source]:
    if path.is_file():
        return [Source(path.name[:-5] if path.name.endswith(".onnx") else path.name, path)]
    if not path.is_dir():
        raise ModelError(f"'{path}' does not exist; give .onnx files or folders that hold them")
    if is_run_folder(path):
        return [Source(path.resolve().name, path / RUN_MODEL, run=path)]
    found = []
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix == ".onnx":
            found.append(Source(child.name[:-5], child))
        elif child.is_dir() and is_run_folder(child):
            found.append(Source(child.name, child / RUN_MODEL, run=child))
        elif child.is_dir():
            found.extend(_triton_versions(child))
    if not found:
        raise ModelError(f"folder '{path}' holds no .onnx files to serve")
    return found


def scan(paths) -> dict[str, list[Source]]:
    """``{name: [Source, ...]}`` for model files, run folders and repository folders."""
    found: dict[str, list[Source]] = {}
    origin: dict[str, Path] = {}
    for raw in paths:
        for source in _sources_in(Path(raw)):
            home = source.path.parent if source.version is None else source.path.parent.parent
            if source.name in origin and origin[source.name].resolve() != home.resolve():
                raise ConfigError(f"two models would be named '{source.name}' ({origin[source.name]} and {home}); "
                                  f"rename one or serve them separately")
            origin[source.name] = home
            if source not in found.setdefault(source.name, []):
                found[source.name].append(source)
    if not found:
        raise ModelError("no models to serve; give .onnx files or folders that hold them")
    return found


def _number(version: str) -> tuple:
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def newest(versions) -> str:
    """The newest of version strings: the largest number."""
    return max(versions, key=_number)


class Repository:
    """Models by name and version, loaded from ``paths`` (or given as ``models``)."""

    def __init__(self, paths=(), *, device: str = "auto", threads: int | None = None, warmup: bool = True,
                 models: dict | None = None, warmup_timeout_s: float = 60.0):
        self.paths = [Path(p) for p in paths]
        self.device, self.threads, self.warmup = device, threads, warmup
        self.warmup_timeout_s = warmup_timeout_s
        self.listeners: list = []  # listener(event, old, new): "load", "swap", "unload"
        self._served: dict[str, dict[str, ServedModel]] = {}  # replaced whole on every change
        self._unloaded: set[str] = set()
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()  # one change at a time
        for name, model in (models or {}).items():
            self._served[name] = {model.version: model}
        if self.paths:
            for sources in scan(self.paths).values():
                for source in sources:
                    self.refresh(source, startup=True)

    # -- reading -----------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._served)

    def latest(self) -> dict[str, ServedModel]:
        """``{name: newest version}`` of every served model."""
        return {name: v[newest(v)] for name, v in self._served.items()}

    def all_models(self) -> list[ServedModel]:
        return [m for versions in self._served.values() for m in versions.values()]

    def get(self, name: str, version: str | None = None) -> ServedModel:
        versions = self._served.get(name)
        if not versions:
            why = (f"model '{name}' is not loaded (it was unloaded; POST /v2/repository/models/{name}/load loads it)"
                   if name in self._unloaded else
                   f"unknown model '{name}'; this server has: {', '.join(self.names()) or 'no models'}")
            raise NotFoundError(why)
        if not version:
            return versions[newest(versions)]
        model = versions.get(version)
        if model is None:
            raise NotFoundError(f"model '{name}' has no version '{version}'; it has: "
                                f"{', '.join(sorted(versions, key=_number))}")
        return model

    def metadata(self, model: ServedModel) -> dict:
        return model.metadata(sorted(self._served.get(model.name, {model.version: model}), key=_number))

    def index(self, ready_only: bool = False) -> list[dict]:
        """The repository extension's index: each served version READY, each model on disk that
        is not served UNAVAILABLE with the reason."""
        entries = [{"name": m.name, "version": m.version, "state": "READY", "reason": ""}
                   for m in sorted(self.all_models(), key=lambda m: (m.name, _number(m.version)))]
        if not ready_only:
            try:
                on_disk = scan(self.paths) if self.paths else {}
            except OnnxforgeError:
                on_disk = {}
            for name in sorted(set(on_disk) - set(self._served)):
                reason = "unloaded" if name in self._unloaded else self._failed.get(name, "not loaded")
                entries.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": reason})
        return entries

    # -- changing ----------------------------------------------------------------------------
    def load(self, name: str) -> None:
        """Load (or reload) every version of ``name`` from the repository folders; raises why not."""
        sources = scan(self.paths).get(name) if self.paths else None
        if not sources:
            raise NotFoundError(f"no model '{name}' in the repository ({', '.join(map(str, self.paths)) or 'none'})")
        self._unloaded.discard(name)
        for source in sources:
            outcome = self.refresh(source, force=True)
            if outcome is WAITING:
                raise ModelError(f"model '{name}': {RUN_MODEL} is newer than the run's metrics.json; retry shortly")

    def unload(self, name: str) -> None:
        with self._lock:
            if name not in self._served:
                raise NotFoundError(f"model '{name}' is not loaded; this server has: {', '.join(self.names())}")
            served = dict(self._served)
            gone = served.pop(name)
            self._served = served
            self._unloaded.add(name)
        for model in gone.values():
            self._notify("unload", model, None)

    def refresh(self, source: Source, *, startup: bool = False, force: bool = False):
        """Load ``source``, check it and publish it. Returns a line saying what was done (``None``
        when nothing was), or :data:`WAITING`; raises :class:`OnnxforgeError` naming why a file was
        refused (the served version stays)."""
        if source.name in self._unloaded and not force:
            return None
        try:
            session = load(source.path, device=self.device, threads=self.threads)
        except OnnxforgeError as exc:
            self._failed[source.name] = str(exc)
            raise
        if self.warmup and not startup:
            try:
                warm_within(session, self.warmup_timeout_s, source.name)
            except OnnxforgeError as exc:
                self._failed[source.name] = str(exc)
                raise ModelError(f"'{source.path}': {exc}") from None
        elif self.warmup:
            self.warm(ServedModel(source.name, session))
        params = run_parameters(source.run, session) if source.run is not None else {}
        if params is WAITING:
            if not startup:
                return WAITING
            params = {"epoch": epoch_of(session)}  # its record is still being written: no metric yet
        candidate = ServedModel(source.name, session, str(source.path), parameters=params)
        with self._lock:
            return self._publish(source, candidate, force)

    def warm(self, model: ServedModel) -> None:
        """Run a model once on zeros before it serves; a model that cannot be is served unwarmed,
        one whose warm-up passes ``warmup_timeout_s`` is refused (:class:`RunTimeoutError`)."""
        try:
            warm_within(model.session, self.warmup_timeout_s, model.name)
        except RunTimeoutError:
            raise
        except OnnxforgeError as exc:
            log.warning("model '%s': warm-up skipped (%s)", model.name, exc)

    def _publish(self, source: Source, candidate: ServedModel, force: bool):
        name = source.name
        versions = dict(self._served.get(name, {}))
        old = versions.get(source.version) if source.version else versions.get(newest(versions)) if versions else None
        dropped = []
        if old is not None and old.signature() != candidate.signature():
            if source.version is not None:
                raise ModelError(f"'{source.path}': its inputs or outputs differ from the served version "
                                 f"{old.version}'s; put the changed model in a new version folder")
            candidate.version = str(int(old.version) + 1) if old.version.isdigit() else "2"
            dropped = [versions.pop(v) for v in list(versions) if v != old.version]  # keep one before it
            old = None
        elif old is not None:
            refused = None if force else verdict(candidate.parameters, old.parameters)
            if refused:
                log.info("model '%s': %s is kept (%s)", name, _describe(old), refused)
                return None
            candidate.version = old.version
        elif source.version is not None:
            candidate.version = source.version
        versions[candidate.version] = candidate
        self._served = {**self._served, name: versions}
        self._failed.pop(name, None)
        for model in dropped:
            self._notify("unload", model, None)
        self._notify("swap" if old is not None else "load", old, candidate)
        if old is not None:
            return f"model '{name}' version {candidate.version}: now serving {_describe(candidate)}"
        return f"model '{name}': version {candidate.version} loaded from {source.path}"

    def _notify(self, event: str, old, new) -> None:
        for listener in self.listeners:
            try:
                listener(event, old, new)
            except Exception:  # a listener (metrics) never stops a change; log.exception says what failed
                log.exception("a repository listener failed on %s", event)


def _describe(model: ServedModel) -> str:
    epoch = model.parameters.get("epoch")
    return f"epoch {epoch}" if epoch is not None else f"'{model.path}'"
