"""Many LoRA adapters over one base model: ``onnxforge serve BASE.onnx --adapters DIR``.

The base model is served in its adapter form (:func:`onnxforge.runtime.adapters.with_adapters`:
every weight LoRA can adapt gets ``W.lora_A``/``W.lora_B`` inputs that default to zeros; a
``model.lora.onnx`` is taken as it is), in one ONNX Runtime session. Every ``DIR/NAME.onnx_adapter``
is read and checked against it (each tensor an adapter input of the model, A ``[K, r]`` and B
``[r, N]`` of one rank per weight); a request picks one with the request parameter
``{"parameters": {"adapter": "NAME"}}`` (HTTP and gRPC alike) and its tensors are fed with the
request's; without the parameter the base answers. Adapters of any rank share the session.

With ``--watch`` the folder is looked at every ``--watch-interval`` seconds: a new or changed file is
loaded (a file that fails its checks is refused, logged and counted, and the adapter's previous
version keeps serving), a removed file's adapter is dropped. The set of adapters is replaced whole
on every change, so a request runs with the adapter as it was when the request arrived.

Metrics (beside the server's own, in its registry):

    onnxforge_adapter_requests_total{model,adapter,outcome}   model runs per adapter ("" for the base)
    onnxforge_adapter_run_seconds{model,adapter}              their time (histogram)
    onnxforge_adapter_loads_total{model,adapter,outcome}      loaded, refused, dropped
    onnxforge_adapters_served{model}                          adapters served now
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Callable
from pathlib import Path

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from onnxforge.runtime.adapters import find_targets, read_adapter, with_adapters
from onnxforge.runtime.adapters.adapter_file import SUFFIX
from onnxforge.runtime.adapters.external import open_for_training
from onnxforge.runtime.adapters.rewrite import adapter_inputs
from onnxforge.runtime.errors import ConfigError, InputError, ModelError, NotFoundError, OnnxforgeError
from onnxforge.runtime.inference.session import (Session, _zero_feeds, current_run_options, session_options,
                                                  validate_feeds)
from onnxforge.runtime.ort.device import resolve_device
from onnxforge.runtime.server.metrics import LATENCY_BUCKETS
from onnxforge.runtime.server.models import ServedModel, find_models

__all__ = ["AdapterSession", "AdapterServing", "select_adapter", "ADAPTER_PARAMETER"]

log = logging.getLogger("onnxforge.serve")
ADAPTER_PARAMETER = "adapter"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class AdapterSession(Session):
    """A :class:`Session` of a model in adapter form whose runs may feed one adapter's tensors."""

    def __init__(self, model, device, *, options=None, source: str | None = None, constants: dict | None = None):
        self.adapter_shapes = adapter_inputs(model)  # input name -> (K, "lora_rank") or ("lora_rank", N)
        if not self.adapter_shapes:
            raise ModelError(f"'{source}' has no weight LoRA can adapt (no 2-D float32 MatMul/Gemm weight)")
        super().__init__(model, device, options=options, source=source)
        # a base whose weights stay in external data: they are inputs fed from the mapped files on every run
        self.constants = dict(constants or {})
        if self.constants:
            self.inputs = [i for i in self.inputs if i.name not in self.constants]
            self._fast_spec = None
        self.adapters: dict[str, dict] = {}  # name -> {input: array}; replaced whole on every change
        self._views: dict[str, _AdapterView] = {}
        self.on_run: Callable[[str, float, str], None] | None = None  # on_run(adapter, seconds, outcome)

    def check(self, name: str, tensors: dict) -> dict:
        """``tensors`` as this model feeds them, or a :class:`ModelError` saying why not."""
        unknown = sorted(set(tensors) - set(self.adapter_shapes))
        if unknown:
            raise ModelError(f"adapter '{name}' has tensor '{unknown[0]}', which is not an adapter input of the "
                             f"base model (those are W.lora_A / W.lora_B of: "
                             f"{', '.join(sorted({k[:-7] for k in self.adapter_shapes})[:8])} ...)")
        out = {}
        for key in sorted(tensors):
            weight = key[:-7]
            a, b = tensors.get(weight + ".lora_A"), tensors.get(weight + ".lora_B")
            if a is None or b is None:
                raise ModelError(f"adapter '{name}' has {key} without its other half for weight '{weight}'")
            (k, _), (_, n) = self.adapter_shapes[weight + ".lora_A"], self.adapter_shapes[weight + ".lora_B"]
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != k or b.shape[1] != n or a.shape[1] != b.shape[0]:
                raise ModelError(f"adapter '{name}': weight '{weight}' needs A [{k}, r] and B [r, {n}]; the file has "
                                 f"A {list(a.shape)} and B {list(b.shape)}")
            out[key] = np.ascontiguousarray(tensors[key], np.float32)
        return out

    def view(self, name: str) -> "_AdapterView":
        if name not in self.adapters:
            shown = ", ".join(sorted(self.adapters)) or "none"
            raise NotFoundError(f"model has no adapter '{name}'; its adapters are: {shown}")
        view = self._views.get(name)
        if view is None:
            view = self._views[name] = _AdapterView(self, name)
        return view

    def run(self, feeds: dict, outputs: list[str] | None = None, run_options=None, adapter: str | None = None) -> dict:
        """:meth:`Session.run`, with ``adapter``'s tensors fed (``None``: the base)."""
        start = time.perf_counter()
        outcome = "error"
        try:
            if adapter is None and not self.constants:
                result = super().run(feeds, outputs, run_options)
            else:
                tensors = {} if adapter is None else self.adapters.get(adapter)
                if tensors is None:
                    raise NotFoundError(f"adapter '{adapter}' was removed while the request waited")
                ready = self._fast_feeds(feeds) or validate_feeds(feeds, self.inputs)
                names = self._output_names if outputs is None else self._checked_outputs(outputs)
                options = run_options if run_options is not None else current_run_options()
                result = dict(zip(names, self._run_public(names, {**ready, **self.constants, **tensors}, options)))
            outcome = "success"
            return result
        finally:
            if self.on_run is not None:
                self.on_run(adapter or "", time.perf_counter() - start, outcome)

    def warmup(self, batch_size: int = 1, runs: int = 1, run_options=None) -> float:
        if not self.constants:
            return super().warmup(batch_size, runs, run_options)
        feeds = _zero_feeds(self.inputs, batch_size)
        start = time.perf_counter()
        for _ in range(max(1, int(runs))):
            self.run(feeds, None, run_options)
        return time.perf_counter() - start


class _AdapterView:
    """The session as one adapter's requests see it: ``run`` feeds that adapter; the rest is the
    session's (inputs, outputs, card). One object per adapter, so dynamic batching groups requests
    of one adapter only."""

    def __init__(self, session: AdapterSession, name: str):
        self._session, self.adapter = session, name

    def run(self, feeds: dict, outputs: list[str] | None = None, run_options=None) -> dict:
        return self._session.run(feeds, outputs, run_options, adapter=self.adapter)

    def __getattr__(self, item):
        return getattr(self._session, item)


def select_adapter(session, parameters: dict):
    """The session a request runs on: ``session`` itself, or its view for the adapter the request's
    ``adapter`` parameter names."""
    name = (parameters or {}).get(ADAPTER_PARAMETER)
    if name is None:
        return session
    if not isinstance(name, str):
        raise InputError(f"the request parameter 'adapter' must be a string naming an adapter; got {type(name).__name__}")
    if not isinstance(session, AdapterSession):
        raise InputError(f"the request names adapter '{name[:64]}', but this model serves no adapters "
                         "(onnxforge serve BASE.onnx --adapters DIR serves them)")
    return session.view(name)


class AdapterServing:
    """The base model of ``serve BASE --adapters DIR`` and its adapter folder."""

    def __init__(self, paths, folder, *, device: str = "auto", threads: int | None = None):
        found = find_models(paths)
        if len(found) != 1:
            raise ConfigError(f"--adapters serves one base model; {len(found)} were given ({', '.join(sorted(found))})")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"--adapters '{folder}' is not a folder")
        (self.name, path), = found.items()
        base, external = open_for_training(path, keep_external=True)  # external data stays in its files
        model = base if adapter_inputs(base) else with_adapters(base, find_targets(base), as_inputs=True)
        if external is not None:
            model = external.as_inputs(model)
        self.session = AdapterSession(model, resolve_device(device), options=session_options(threads), source=str(path),
                                      constants=external.arrays if external is not None else None)
        self.model = ServedModel(self.name, self.session, str(path), parameters={"adapters": []})
        self._seen: dict[str, tuple] = {}  # file name -> (mtime_ns, size) last looked at
        self._counters: dict[str, Any] | None = None
        self.poll()

    # -- metrics ---------------------------------------------------------------------------------
    def count_into(self, registry) -> None:
        c: dict[str, Any] = {
            "runs": Counter("onnxforge_adapter_requests", "Model runs per adapter ('' for the base), by outcome",
                            ["model", "adapter", "outcome"], registry=registry),
            "seconds": Histogram("onnxforge_adapter_run_seconds", "Model run seconds per adapter",
                                 ["model", "adapter"], buckets=LATENCY_BUCKETS, registry=registry),
            "loads": Counter("onnxforge_adapter_loads", "Adapters loaded, refused or dropped",
                             ["model", "adapter", "outcome"], registry=registry),
            "served": Gauge("onnxforge_adapters_served", "Adapters served now", ["model"], registry=registry)}
        self._counters = c
        c["served"].labels(self.name).set(len(self.session.adapters))

        def on_run(adapter: str, seconds: float, outcome: str) -> None:
            c["runs"].labels(self.name, adapter, outcome).inc()
            c["seconds"].labels(self.name, adapter).observe(seconds)

        self.session.on_run = on_run

    def _count(self, adapter: str, outcome: str) -> None:
        if self._counters is not None:
            self._counters["loads"].labels(self.name, adapter, outcome).inc()
            self._counters["served"].labels(self.name).set(len(self.session.adapters))

    # -- the folder ------------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """Load new and changed adapter files, drop removed ones; returns lines saying what changed."""
        files = {p.name: p for p in sorted(self.folder.glob("*" + SUFFIX)) if p.is_file()}
        current = dict(self.session.adapters)
        said = []
        for file_name, path in files.items():
            name = file_name[: -len(SUFFIX)]
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            if self._seen.get(file_name) == stamp:
                continue
            self._seen[file_name] = stamp
            try:
                if not _NAME.match(name):
                    raise ModelError(f"adapter file name '{file_name}': a name is letters, digits, '_', '.', '-'")
                current[name] = self.session.check(name, read_adapter(path).parameters)
            except OnnxforgeError as exc:
                log.warning("adapter '%s' refused: %s", name, exc)
                said.append(f"refused {name}")
                self._count(name, "refused")
                continue
            said.append(f"loaded {name}")
        for name in [n for n in current if n + SUFFIX not in files]:
            del current[name]
            said.append(f"dropped {name}")
        for file_name in [f for f in self._seen if f not in files]:
            del self._seen[file_name]
        if said:
            self.session.adapters = current  # published whole
            self.model.parameters["adapters"] = sorted(current)
            for line in said:
                log.info("model '%s': adapter %s", self.name, line)
                verb, name = line.split(" ", 1)
                if verb != "refused":
                    self._count(name, verb)
        return said

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.poll)
            except Exception:  # a failed look is logged (log.exception); the next one tries again
                log.exception("looking at adapter folder '%s' failed", self.folder)
