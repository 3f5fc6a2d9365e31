"""Running requests under load: at most ``max_concurrency`` model runs at a time on a thread
pool, at most ``max_queue`` requests waiting for one (more get ``ServerBusyError``, HTTP 503), and
optional dynamic batching that merges small concurrent requests to one model into one run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from onnxforge.runtime.errors import ServerBusyError
from onnxforge.runtime.server.deadlines import STOP_GRACE_S, Runs
from onnxforge.runtime.server.inline import InlinePolicy

__all__ = ["Scheduler"]

log = logging.getLogger("onnxforge.serve")


@dataclass
class _Item:
    feeds: dict
    outputs: tuple
    rows: int
    key: tuple
    future: asyncio.Future
    queued: float = 0.0  # time.perf_counter() when it was submitted
    finish: Callable[[dict], Any] | None = None  # finish(results) on the worker thread after the run (the answer's encoding)


@dataclass
class Stats:
    """Counters for tests and the benchmark: requests answered and model runs made."""

    requests: int = 0
    runs: int = 0
    batched_requests: int = 0
    rejected: int = 0
    largest_batch: int = 0
    inline: int = 0  # requests answered on the event loop (see .inline)


def batch_axis_ok(session) -> bool:
    """Whether requests to ``session`` can be stacked on axis 0: every input and output has a
    first dimension, and it is the same named dynamic dimension (``N``) for all of them."""
    dims = [io.shape[0] if io.shape else None for io in list(session.inputs) + list(session.outputs)]
    return bool(dims) and isinstance(dims[0], str) and all(d == dims[0] for d in dims)


class Scheduler:
    """Admits, queues and runs inference requests; one per server, shared by its models."""

    def __init__(self, max_concurrency: int, max_queue: int, max_batch: int = 1, max_delay_ms: float = 0.0,
                 runs: Runs | None = None):
        self.runs = runs or Runs(None, None)  # model runs under their deadlines
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.max_delay = max_delay_ms / 1000.0
        self.executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="onnxforge-infer")
        self.stats = Stats()
        self._slots: asyncio.Semaphore | None = None
        self._waiting = 0
        self._batchers: dict = {}
        self._batchable: dict = {}
        self._expected = 0  # requests being read that dynamic batching may merge (see expecting)
        self.inline = InlinePolicy()  # which small requests are answered on the event loop
        self.on_wait = None  # on_wait(seconds): how long a request waited for its model run
        self.on_batch = None  # on_batch(rows): the rows of each run that dynamic batching merged

    @property
    def waiting(self) -> int:
        return self._waiting

    def _semaphore(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    def _admit(self, must_wait: bool, assembling: int = 0) -> None:
        """Refuse a request that would wait while ``max_queue`` others already wait (requests
        gathered into the batch being assembled, at most ``assembling``, are not counted)."""
        if must_wait and self._waiting >= self.max_queue + assembling:
            self.stats.rejected += 1
            raise ServerBusyError(f"the server is busy: {self._waiting} requests are waiting for one of "
                             f"{self.max_concurrency} model runs (--max-queue {self.max_queue}); retry later")

    def may_batch(self, session) -> bool:
        """Whether dynamic batching is on and ``session``'s requests can be stacked."""
        return self.max_batch > 1 and self._can_batch(session)

    @contextlib.contextmanager
    def expecting(self):
        """Around the reading of a request that may be batched: a batch being assembled waits for
        it (at most ``max_delay``) instead of leaving without it; with none being read, a batch
        leaves at once (no delay is added when nothing else is coming)."""
        self._expected += 1
        try:
            yield
        finally:
            self._expected -= 1
            if not self._expected:
                for batcher in self._batchers.values():
                    batcher.poke()

    async def run(self, session, feeds: dict, outputs: list[str], finish=None):
        """Run ``session`` on validated ``feeds``; merged with other requests when batching is on.
        ``finish(results)``, when given, runs on the worker thread after the run, and its value is
        returned (the answer encoded where the run happened, without another hand-off)."""
        rows = _rows(feeds)
        if self.max_batch > 1 and rows is not None and rows < self.max_batch and self._can_batch(session):
            return await self._batched(session, feeds, tuple(outputs), rows, finish)
        if finish is None:
            return await self.call(self.runs.run, session, feeds, outputs)
        return await self.call(_then, finish, self.runs.run, session, feeds, outputs)

    async def call_inline(self, fn, *args):
        """``fn(*args)`` on the event loop itself, in a free run slot (see :mod:`.inline`; the
        caller checked :meth:`slot_free`)."""
        slots = self._semaphore()
        await slots.acquire()  # free: returns at once
        try:
            result = fn(*args)
            self.stats.runs += 1
            self.stats.inline += 1
            return result
        finally:
            slots.release()
            self.stats.requests += 1

    def slot_free(self) -> bool:
        return not self._semaphore().locked()

    async def call(self, fn, *args):
        """``fn(*args)`` on the thread pool, within the concurrency and queue limits."""
        slots = self._semaphore()
        self._admit(slots.locked())
        self._waiting += 1
        start = time.perf_counter()
        try:
            await slots.acquire()
        finally:
            self._waiting -= 1
        self._waited(time.perf_counter() - start)
        try:
            result = await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
            self.stats.runs += 1
            return result
        finally:
            slots.release()
            self.stats.requests += 1

    def _waited(self, seconds: float) -> None:
        if self.on_wait is not None:
            self.on_wait(seconds)

    def retire(self, session) -> None:
        """Forget ``session`` (replaced or unloaded; call on the event loop): its batcher answers
        what it holds, then stops."""
        self._batchable.pop(id(session), None)
        self.inline.forget(session)
        batcher = self._batchers.pop(id(session), None)
        if batcher is not None:
            batcher.retire()

    def _can_batch(self, session) -> bool:
        known = self._batchable.get(id(session))
        if known is None:
            known = self._batchable[id(session)] = batch_axis_ok(session)
        return known

    async def _batched(self, session, feeds: dict, outputs: tuple, rows: int, finish=None):
        self._admit(True, self.max_batch)
        batcher = self._batchers.get(id(session))
        if batcher is None:
            batcher = self._batchers[id(session)] = _Batcher(self, session)
        key = (outputs,) + tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(feeds.items()))
        item = _Item(feeds, outputs, rows, key, asyncio.get_running_loop().create_future(), time.perf_counter(),
                     finish)
        self._waiting += 1
        batcher.submit(item)
        try:
            return await item.future
        finally:
            self.stats.requests += 1

    async def close(self) -> None:
        self.runs.stop_all()  # a run that never ends must not hold the shutdown
        for batcher in self._batchers.values():
            await batcher.close()
        self.executor.shutdown(wait=False)
        deadline = time.monotonic() + STOP_GRACE_S
        while self.runs.active and time.monotonic() < deadline:  # stopped runs return within moments
            await asyncio.sleep(0.02)
        if self.runs.active:
            log.warning("%d model run(s) did not stop when asked; the server stops without them", self.runs.active)


def _rows(feeds: dict) -> int | None:
    counts = {v.shape[0] if v.ndim else None for v in feeds.values()}
    return counts.pop() if len(counts) == 1 else None


class _Batcher:
    """Runs requests to one model in stacked batches. A batch leaves as soon as a run slot is free:
    with nothing else queued a request runs at once, alone, and pays no delay; while every slot is
    busy requests gather, and the next free slot takes up to ``max_batch`` rows of those that can
    be stacked (same outputs, dtypes and trailing shapes). Holding a free slot it waits, at most
    ``max_delay``, only for requests known to be on their way (being read: ``expecting``)."""

    def __init__(self, scheduler: Scheduler, session):
        self.scheduler = scheduler
        self.session = session
        self.pending: collections.deque = collections.deque()
        self.pending_rows = 0
        self.running: set = set()
        self._poke: asyncio.Future | None = None  # resolved when something changes (see poke)
        self.retired = False
        self.task = asyncio.get_running_loop().create_task(self._collect())

    def submit(self, item: _Item) -> None:
        self.pending.append(item)
        self.pending_rows += item.rows
        self.poke()

    def poke(self) -> None:
        """Wake the collector: a request arrived, the last expected one was read, or retirement."""
        if self._poke is not None and not self._poke.done():
            self._poke.set_result(None)

    async def _wait(self, timeout: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._poke = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _resolve, self._poke)
        await self._poke
        if timer is not None:
            timer.cancel()

    async def _collect(self) -> None:
        sched = self.scheduler
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                if self.retired:
                    return
                await self._wait()
                continue
            slots = sched._semaphore()
            await slots.acquire()  # while every slot is busy, the next batch grows
            if sched.max_delay > 0 and sched._expected:
                deadline = loop.time() + sched.max_delay
                while self.pending_rows < sched.max_batch and sched._expected and deadline > loop.time():
                    await self._wait(deadline - loop.time())
            group = self._take()
            sched._waiting -= len(group)
            task = loop.create_task(self._run(group))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    def _take(self) -> list:
        """The oldest request and those after it that stack with it, up to ``max_batch`` rows."""
        head = self.pending.popleft()
        group, total, rest = [head], head.rows, collections.deque[_Item]()
        while self.pending:
            item = self.pending.popleft()
            if item.key == head.key and total + item.rows <= self.scheduler.max_batch:
                group.append(item)
                total += item.rows
            else:
                rest.append(item)
        self.pending = rest
        self.pending_rows -= total
        return group

    def retire(self) -> None:
        self.retired = True
        self.poke()

    async def _run(self, group: list) -> None:
        sched = self.scheduler
        now = time.perf_counter()
        for item in group:
            sched._waited(now - item.queued)
        total = sum(it.rows for it in group)
        if sched.on_batch is not None:
            sched.on_batch(total)
        try:
            outcomes, runs = await asyncio.get_running_loop().run_in_executor(sched.executor, self._work, group)
            sched.stats.runs += runs
            if runs == 1 and len(group) > 1:
                sched.stats.batched_requests += len(group)
                sched.stats.largest_batch = max(sched.stats.largest_batch, total)
            for item, (ok, value) in zip(group, outcomes):
                if not item.future.done():
                    item.future.set_result(value) if ok else item.future.set_exception(value)
        except BaseException as exc:  # cancelled at shutdown: every request is told
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc if isinstance(exc, Exception) else ServerBusyError(
                        "the server is shutting down"))
            raise
        finally:
            sched._semaphore().release()

    def _work(self, group: list) -> tuple[list, int]:
        """On a worker thread: the group's run (stacked when it is more than one request), each
        request's share finished (``_Item.finish``); ``([(ok, value) per item], runs made)``. A
        stacked run that fails, or whose outputs do not split by rows, is run again per request,
        so each request fails (or succeeds) on its own."""
        run = self.scheduler.runs.run
        if len(group) > 1:
            merged = {k: np.concatenate([it.feeds[k] for it in group]) for k in group[0].feeds}
            total = sum(it.rows for it in group)
            try:
                result = run(self.session, merged, list(group[0].outputs))
            except Exception:  # noqa: BLE001 - each request is run on its own below
                result = None
            if result is not None and all(np.ndim(v) and len(v) == total for v in result.values()):
                outcomes, start = [], 0
                for item in group:
                    outcomes.append(_finish(item, {k: v[start : start + item.rows] for k, v in result.items()}))
                    start += item.rows
                return outcomes, 1
            return [self._alone(item) for item in group], len(group) + (result is not None)
        return [self._alone(group[0])], 1

    def _alone(self, item: _Item) -> tuple[bool, object]:
        try:
            result = self.scheduler.runs.run(self.session, item.feeds, list(item.outputs))
        except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
            return False, exc
        return _finish(item, result)

    async def close(self) -> None:
        self.task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        while self.pending:
            item = self.pending.popleft()
            if not item.future.done():
                item.future.set_exception(ServerBusyError("the server is shutting down"))


def _finish(item: _Item, results: dict) -> tuple[bool, object]:
    if item.finish is None:
        return True, results
    try:
        return True, item.finish(results)
    except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
        return False, exc


def _then(finish, fn, *args):
    """``finish(fn(*args))``: a run and its answer's encoding in one worker step."""
    return finish(fn(*args))


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
