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
import functools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
import numpy as np

from onnxforge.runtime.errors import InputError
from onnxforge.runtime.inference.session import IOInfo, validate_feeds
from onnxforge.runtime.server.adapters import select_adapter
from onnxforge.runtime.server.config import ServerConfig
from onnxforge.runtime.server.inline import READ_ON_LOOP_BYTES
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
    a time, so the event loop (and the health endpoints on it) never waits on a request's work.

    :meth:`respond` is the whole of one request in as few hand-offs between threads as it takes:
    a small request to a model that is not batched is read, checked, run and answered in ONE
    worker step within the scheduler's slots (each hand-off costs a thread wake-up and the GIL
    passing back and forth: three of them took more time than the run of a small MLP); a request
    that dynamic batching may merge is read in one step, then run and answered in its batch's."""

    def __init__(self, scheduler: Scheduler, config: ServerConfig):
        self.scheduler = scheduler
        self.limit = config.max_body_bytes
        self.work_at_once = config.max_concurrency
        self.executor = ThreadPoolExecutor(config.max_concurrency, thread_name_prefix="onnxforge-work")
        self._large_parses: asyncio.Semaphore | None = None
        self._work: asyncio.Semaphore | None = None

    async def offload(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on a worker thread, at most ``work_at_once`` such steps at a time."""
        if self._work is None:
            self._work = asyncio.Semaphore(self.work_at_once)
        async with self._work:
            call = functools.partial(fn, *args, **kwargs) if kwargs else fn
            return await asyncio.get_running_loop().run_in_executor(self.executor, call, *([] if kwargs else args))

    def _parse_now(self, body: bytes, header_length, session, model: str, view: RawView | None) -> InferRequest:
        return parse_infer_request(body, header_length, session.inputs, session.outputs, model=model,
                                   max_elements=self.limit, raw=(view.inputs, view.outputs) if view is not None else None)

    async def _parse(self, body: bytes, header_length, session, model: str, view: RawView | None):
        if len(body) < PARSE_OFF_LOOP_BYTES:
            return await self.offload(self._parse_now, body, header_length, session, model, view)
        if self._large_parses is None:
            self._large_parses = asyncio.Semaphore(LARGE_PARSES_AT_ONCE)
        async with self._large_parses:
            return await self.offload(self._parse_now, body, header_length, session, model, view)

    async def respond(self, model: ServedModel, body: bytes, header_length, encode, size: int | None = None):
        """``encode(answer)`` of one request: ``body`` and ``header_length`` as :meth:`infer` takes
        them, or a callable returning both (gRPC's conversion, done on the worker thread; ``size``
        then bounds the body it makes)."""
        session = model.session
        size = len(body) if size is None else size
        sched = self.scheduler
        plain = raw_view(session) is None
        if size < PARSE_OFF_LOOP_BYTES and plain and not sched.may_batch(session):
            if sched.inline.allows(session, size) and sched.slot_free():
                return await sched.call_inline(self._whole, model, session, body, header_length, encode, True)
            return await sched.call(self._whole, model, session, body, header_length, encode)
        if sched.may_batch(session) and plain and size <= READ_ON_LOOP_BYTES:
            # read on the loop: its cost is bounded by the small body (orjson and the checks: about
            # 0.3 ms for 40 KB, 32 rows of 64 numbers), and the batch's run and answers then take
            # one hand-off for all its requests
            if callable(body):
                body, header_length = body()
            parsed = self._parse_now(body, header_length, session, model.name, None)
            session = select_adapter(session, parsed.parameters)
            return await self._batched(model, parsed, session, validate_feeds(parsed.feeds, session.inputs), encode)
        if callable(body):
            body, header_length = await self.offload(body)
        if sched.may_batch(session):
            with sched.expecting():  # a batch being assembled waits for this one while it is read
                answer_or_parsed = await self._read(model, body, header_length)
            if isinstance(answer_or_parsed, Answer):
                return await self.offload(encode, answer_or_parsed)
            parsed, session, feeds = answer_or_parsed
            return await self._batched(model, parsed, session, feeds, encode)
        return await self.offload(encode, await self.infer(model, body, header_length))

    async def _batched(self, model: ServedModel, parsed: InferRequest, session, feeds: dict, encode):
        """The answer of a request dynamic batching may merge, encoded where its batch ran."""
        labels = session.labels if any(o.classification for o in parsed.outputs) else None
        return await self.scheduler.run(session, feeds, [o.name for o in parsed.outputs],
                                        finish=lambda results: encode(Answer(model, parsed, results, labels)))

    def _whole(self, model: ServedModel, served, body, header_length, encode, inline: bool = False):
        """One request from its bytes to its answer's, in a scheduler slot: on a worker thread,
        or with ``inline`` on the event loop (:mod:`.inline`); its cost is noted for that choice:
        this thread's CPU time (neither waiting for the GIL nor other processes taking the core
        inflate it), for every request on a worker and one in :data:`~.inline.SAMPLE_EVERY` inline
        (asking for a thread's CPU time is a system call)."""
        measured = not inline or self.scheduler.inline.sample(served)
        start = time.thread_time() if measured else 0.0
        try:
            if callable(body):
                body, header_length = body()
            parsed = self._parse_now(body, header_length, served, model.name, None)
            session = select_adapter(served, parsed.parameters)
            feeds = validate_feeds(parsed.feeds, session.inputs)
            results = self.scheduler.runs.run(session, feeds, [o.name for o in parsed.outputs])
            labels = session.labels if any(o.classification for o in parsed.outputs) else None
            return encode(Answer(model, parsed, results, labels))
        finally:
            if measured:
                self.scheduler.inline.note(served, time.thread_time() - start)

    async def _read(self, model: ServedModel, body: bytes, header_length):
        """The parsed request, its session and feeds; or the :class:`Answer` of a raw request."""
        session = model.session
        view = raw_view(session)
        parsed = await self._parse(body, header_length, session, model.name, view)
        if parsed.raw and view is not None:
            return await self._raw(model, parsed, view)
        session = select_adapter(session, parsed.parameters)  # a LoRA adapter the request names (--adapters)
        return parsed, session, validate_feeds(parsed.feeds, session.inputs)

    async def infer(self, model: ServedModel, body: bytes, header_length) -> Answer:
        """Answer one request body (the protocol's JSON, with binary data after it when
        ``header_length`` is given) with ``model``; raises :class:`InputError` naming what is wrong."""
        read = await self._read(model, body, header_length)
        if isinstance(read, Answer):
            return read
        parsed, session, feeds = read
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
