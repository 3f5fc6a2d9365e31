"""Running requests under load: at most ``max_concurrency`` model runs at a time on a thread
pool, at most ``max_queue`` requests waiting for one (more get ``ServerBusyError``, HTTP 503), and
optional dynamic batching that merges small concurrent requests to one model into one run.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from onnxforge.runtime.errors import ServerBusyError
from onnxforge.runtime.server.deadlines import STOP_GRACE_S, Runs

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


@dataclass
class Stats:
    """Counters for tests and the benchmark: requests answered and model runs made."""

    requests: int = 0
    runs: int = 0
    batched_requests: int = 0
    rejected: int = 0
    largest_batch: int = 0


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

    async def run(self, session, feeds: dict, outputs: list[str]) -> dict:
        """Run ``session`` on validated ``feeds``; merged with other requests when batching is on."""
        rows = _rows(feeds)
        if self.max_batch > 1 and rows is not None and rows < self.max_batch and self._can_batch(session):
            return await self._batched(session, feeds, tuple(outputs), rows)
        return await self.call(self.runs.run, session, feeds, outputs)

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
        batcher = self._batchers.pop(id(session), None)
        if batcher is not None:
            batcher.retire()

    def _can_batch(self, session) -> bool:
        known = self._batchable.get(id(session))
        if known is None:
            known = self._batchable[id(session)] = batch_axis_ok(session)
        return known

    async def _batched(self, session, feeds: dict, outputs: tuple, rows: int) -> dict:
        self._admit(True, self.max_batch)
        batcher = self._batchers.get(id(session))
        if batcher is None:
            batcher = self._batchers[id(session)] = _Batcher(self, session)
        key = (outputs,) + tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(feeds.items()))
        item = _Item(feeds, outputs, rows, key, asyncio.get_running_loop().create_future(), time.perf_counter())
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
    """Collects requests to one model for up to ``max_delay`` after the first arrives (or until
    ``max_batch`` rows), then runs each group of compatible requests as one stacked batch."""

    def __init__(self, scheduler: Scheduler, session):
        self.scheduler = scheduler
        self.session = session
        self.pending: collections.deque = collections.deque()
        self.pending_rows = 0
        self.running: set = set()
        self._arrived: asyncio.Future | None = None  # resolved by the first request of a batch
        self._full: asyncio.Future | None = None  # resolved once max_batch rows are pending
        self.retired = False
        self.task = asyncio.get_running_loop().create_task(self._collect())

    def submit(self, item: _Item) -> None:
        self.pending.append(item)
        self.pending_rows += item.rows
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)
        if self._full is not None and not self._full.done() and self.pending_rows >= self.scheduler.max_batch:
            self._full.set_result(None)

    async def _collect(self) -> None:
        sched = self.scheduler
        loop = asyncio.get_running_loop()
        while True:
            if not self.pending:
                if self.retired:
                    return
                self._arrived = loop.create_future()
                await self._arrived
                if not self.pending:
                    continue
            if self.pending_rows < sched.max_batch and sched.max_delay > 0:
                # one timer per batch: wait for more requests until the delay ends or the batch is full
                self._full = loop.create_future()
                timer = loop.call_later(sched.max_delay, _resolve, self._full)
                await self._full
                timer.cancel()
                self._full = None
            batch: list = []
            total = 0
            while self.pending and (not batch or total + self.pending[0].rows <= sched.max_batch):
                item = self.pending.popleft()
                batch.append(item)
                total += item.rows
            self.pending_rows -= total
            groups: dict = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for group in groups.values():
                await sched._semaphore().acquire()  # while every slot is busy, the next batch grows
                sched._waiting -= len(group)
                task = loop.create_task(self._run(group))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    def retire(self) -> None:
        self.retired = True
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    async def _run(self, group: list) -> None:
        sched = self.scheduler
        loop = asyncio.get_running_loop()
        run = functools.partial(sched.runs.run, self.session)
        now = time.perf_counter()
        for item in group:
            sched._waited(now - item.queued)
        if sched.on_batch is not None:
            sched.on_batch(sum(it.rows for it in group))
        try:
            if len(group) == 1:
                await self._settle(group[0], loop.run_in_executor(sched.executor, run, group[0].feeds,
                                                                 list(group[0].outputs)))
                sched.stats.runs += 1
                return
            merged = {k: np.concatenate([it.feeds[k] for it in group]) for k in group[0].feeds}
            total = sum(it.rows for it in group)
            try:
                result = await loop.run_in_executor(sched.executor, run, merged, list(group[0].outputs))
                sched.stats.runs += 1
            except Exception:  # noqa: BLE001 - let each request fail (or succeed) on its own
                result = None
            if result is None or any(np.ndim(v) == 0 or len(v) != total for v in result.values()):
                for item in group:
                    await self._settle(item, loop.run_in_executor(sched.executor, run, item.feeds, list(item.outputs)))
                    sched.stats.runs += 1
                return
            sched.stats.batched_requests += len(group)
            sched.stats.largest_batch = max(sched.stats.largest_batch, total)
            start = 0
            for item in group:
                if not item.future.done():
                    item.future.set_result({k: v[start : start + item.rows] for k, v in result.items()})
                start += item.rows
        finally:
            sched._semaphore().release()

    @staticmethod
    async def _settle(item: _Item, pending) -> None:
        try:
            value = await pending
        except Exception as exc:  # noqa: BLE001 - handed to the request that caused it
            if not item.future.done():
                item.future.set_exception(exc)
            return
        if not item.future.done():
            item.future.set_result(value)

    async def close(self) -> None:
        self.task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)
        while self.pending:
            item = self.pending.popleft()
            if not item.future.done():
                item.future.set_exception(ServerBusyError("the server is shutting down"))


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
