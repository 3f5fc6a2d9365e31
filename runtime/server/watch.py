"""``serve --watch``: model files that change or appear are loaded, checked and swapped in.

Every ``interval`` seconds the repository folders are scanned (off the event loop). A file is
taken once it has stayed the same (size, modification time, inode) over two looks, so a file
still being written is not loaded yet; then :meth:`Repository.refresh` loads it on a worker
thread, warms it up, checks its inputs and outputs (a plain file or run folder whose signature
changed becomes a new version; a Triton version folder must keep it) and, for a run folder, the
epoch's validation metric, and publishes it. Requests in flight finish on the old session. A file
that fails any check leaves the served model as it was and is logged in one line, once; it is
tried again when it changes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from onnxforge.runtime.errors import OnnxforgeError
from onnxforge.runtime.server.repository import Repository, Source, scan
from onnxforge.runtime.server.runs import METRICS_FILE, WAITING

__all__ = ["Watcher"]

log = logging.getLogger("onnxforge.serve")


def _stat(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _fingerprint(source: Source):
    model = _stat(source.path)
    if model is None:
        return None
    return model if source.run is None else (model, _stat(source.run / METRICS_FILE))


class Watcher:
    """Polls a repository's folders and refreshes what changed (one poll at a time)."""

    def __init__(self, repository: Repository, interval: float, on_event=None):
        self.repository = repository
        self.interval = interval
        self.on_event = on_event  # on_event(name, outcome): "swapped" or "refused"; for metrics
        self._done: dict[Source, object] = {}  # the fingerprint last acted on
        self._seen: dict[Source, object] = {}  # the fingerprint of the last look
        self._scan_error: str | None = None
        for sources in (scan(repository.paths).values() if repository.paths else ()):
            for source in sources:
                self._done[source] = self._seen[source] = _fingerprint(source)
        self.polls = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.poll)

    def poll(self) -> None:
        """One look at the folders: refresh each source that changed and then held still."""
        self.polls += 1
        try:
            found = scan(self.repository.paths)
        except OnnxforgeError as exc:
            if str(exc) != self._scan_error:
                log.warning("watch: %s", exc)
                self._scan_error = str(exc)
            return
        self._scan_error = None
        for sources in found.values():
            for source in sources:
                self._look(source)

    def _look(self, source: Source) -> None:
        now = _fingerprint(source)
        before, self._seen[source] = self._seen.get(source), now
        if now is None or now == self._done.get(source) or now != before:
            return  # gone, already handled, or still changing
        try:
            outcome = self.repository.refresh(source)
        except Exception as exc:  # noqa: BLE001 - whatever a file does, the served model stays
            self._done[source] = now
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("model '%s' not swapped in, the served one stays: %s", source.name, text)
            self._tell(source.name, "refused")
            return
        if outcome is WAITING:
            return  # metrics.json has not caught up with model.onnx: look again
        self._done[source] = now
        if outcome:
            log.info("%s", outcome)
            self._tell(source.name, "swapped")

    def _tell(self, name: str, outcome: str) -> None:
        if self.on_event is not None:
            self.on_event(name, outcome)
