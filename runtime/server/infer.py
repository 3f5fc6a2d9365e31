"""One inference request, whichever protocol brought it: parsed and checked (:mod:`.oip`), run
through the scheduler, answered with the outputs asked for. REST and gRPC both call
:meth:`Engine.infer`, so both apply the same checks and limits and give the same answers.

Raw ``BYTES`` in, text out: a model whose card reads text (a tokenizer) or images also takes one
``BYTES`` input named ``text`` or ``image`` (UTF-8 strings; encoded image files, sent as binary
data) and answers one ``BYTES`` output ``answer``: the class name or decoded text per element,
by :func:`onnxforge.runtime.tasks.raw.answers`, as ``onnxforge infer`` gives.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import IOInfo, validate_feeds
from onnxforge.runtime.server.adapters import select_adapter
from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.models import ServedModel
from onnxforge.runtime.server.oip import InferRequest, parse_infer_request
from onnxforge.runtime.server.scheduler import Scheduler
from onnxforge.runtime.tasks.raw import answers, feeds_from_bytes, raw_kind

__all__ = ["Answer", "Engine", "ANSWER", "PARSE_OFF_LOOP_BYTES", "raw_view"]

ANSWER = "answer"
PARSE_OFF_LOOP_BYTES = 1 << 20  # bodies this large are parsed one at a time (LARGE_PARSES_AT_ONCE)
# Large bodies are parsed one at a time: json.loads holds the GIL, so parsing two at once is no
# faster, and one at a time bounds the memory that parsing takes to one request's worth.
LARGE_PARSES_AT_ONCE = 1


@dataclass(frozen=True)
class RawView:
    """The raw-input face of a text or image model: one BYTES input, one BYTES output."""

    inputs: list
    outputs: list


def raw_view(session) -> RawView | None:
    """The BYTES face of ``session`` (``None`` for a model whose card reads no text or image)."""
    if getattr(session, "card", None) is None:
        return None
    kind = raw_kind(session)
    if kind not in ("text", "image"):
        return None
    return RawView([IOInfo(kind, ("N",), np.dtype(object))], [IOInfo(ANSWER, ("N",), np.dtype(object))])


@dataclass
class Answer:
    model: ServedModel
    request: InferRequest
    results: dict
    labels: list | None


class Engine:
    """What both protocols share: the scheduler and the limits. Every step whose cost grows with
    the request (decompressing, parsing, decoding images, tokenizing, encoding the answer, gRPC's
    conversions) runs on a worker thread through :meth:`offload`, at most ``max_concurrency`` at
    a time, so the event loop (and the health endpoints on it) never waits on a request's work."""

    def __init__(self, scheduler: Scheduler, config: ServerConfig):
        self.scheduler = scheduler
        self.limit = config.max_body_bytes
        self.work_at_once = config.max_concurrency
        self._large_parses: asyncio.Semaphore | None = None
        self._work: asyncio.Semaphore | None = None

    async def offload(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a worker thread, at most ``work_at_once`` such steps at a time."""
        if self._work is None:
            self._work = asyncio.Semaphore(self.work_at_once)
        async with self._work:
            return await run_in_threadpool(fn, *args, **kwargs)

    async def _parse(self, body: bytes, header_length, inputs, outputs, model: str, view: RawView | None):
        args = (body, header_length, inputs, outputs)
        kwargs: dict[str, Any] = {"model": model, "max_elements": self.limit,
                                  "raw": (view.inputs, view.outputs) if view is not None else None}
        if len(body) < PARSE_OFF_LOOP_BYTES:
            return await self.offload(parse_infer_request, *args, **kwargs)
        if self._large_parses is None:
            self._large_parses = asyncio.Semaphore(LARGE_PARSES_AT_ONCE)
        async with self._large_parses:
            return await self.offload(parse_infer_request, *args, **kwargs)

    async def infer(self, model: ServedModel, body: bytes, header_length) -> Answer:
        """Answer one request body (the protocol's JSON, with binary data after it when
        ``header_length`` is given) with ``model``; raises :class:`InputError` naming what is wrong."""
        session = model.session
        view = raw_view(session)  # the request's declared inputs choose it (parse_infer_request)
        parsed = await self._parse(body, header_length, session.inputs, session.outputs, model.name, view)
        if parsed.raw and view is not None:
            return await self._raw(model, parsed, view)
        session = select_adapter(session, parsed.parameters)  # a LoRA adapter the request names (--adapters)
        feeds = validate_feeds(parsed.feeds, session.inputs)
        results = await self.scheduler.run(session, feeds, [o.name for o in parsed.outputs])
        labels = session.labels if any(o.classification for o in parsed.outputs) else None
        return Answer(model, parsed, results, labels)

    async def _raw(self, model: ServedModel, parsed: InferRequest, view: RawView) -> Answer:
        items = list(parsed.feeds[view.inputs[0].name].ravel())
        if not items:
            raise InputError(f"input '{view.inputs[0].name}' holds no elements")
        session = model.session
        feeds = await self.offload(feeds_from_bytes, session, items)  # image decode, tokenizing
        texts = await self.scheduler.call(self.scheduler.runs.call, session, answers, session, feeds)  # under deadlines
        out = np.empty(len(texts), dtype=object)
        out[:] = texts
        return Answer(model, parsed, {ANSWER: out}, None)
