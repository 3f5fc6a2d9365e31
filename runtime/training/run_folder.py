"""The run folder: where a run keeps everything it needs to continue, and what it makes.

    RUNDIR/<backend folder>/  what the backend builds (``artifacts/`` for ONNX Runtime's artifacts)
    RUNDIR/source.onnx        the forward model the run started from
    RUNDIR/checkpoint         weights, optimizer state, epoch, step, data-order RNG, settings,
                              history (before step 1 and after every epoch; never half-written)
    RUNDIR/checkpoint.sha256  the digests of complete checkpoints (see :mod:`.checkpoint_file`)
    RUNDIR/model.onnx         the inference model with the trained weights (every epoch)
    RUNDIR/metrics.json       settings and history: loss, metrics, steps/s per epoch
    RUNDIR/.lock              held (``fcntl.flock``) by the one run writing the folder; its pid inside
    RUNDIR/.onnxforge-run     the run marker: this folder is a run onnxforge wrote

onnxforge writes only into a folder it created, an empty one, or one that holds its run marker (a
run folder from before the marker is known by its checkpoint and digest record). Any other folder
is refused in one line naming ``--overwrite``; with ``--overwrite`` the run is written beside the
folder's files, and still refused if one of them has a name the run writes (``model.onnx``,
``artifacts/``, ...): onnxforge never replaces or removes a file or tree it did not write.

:class:`RunFolder` owns these files: the lock, atomic writes with the umask's file mode, the
checks a resume makes before it trusts a checkpoint, and one-line errors for a full disk, a folder
that cannot be written, or an ``--out`` that is a dangling link. A folder that a failed start
created is removed again; one that holds a checkpoint keeps its last good one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from onnx import ModelProto

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.modelio.files import atomic_write_bytes, file_mode, save_model
from onnxforge.runtime.training.checkpoint_file import remove_stale_temporaries, save_checkpoint, verify_checkpoint

__all__ = ["RunFolder", "MARKER", "RUN_NAMES"]

MARKER = ".onnxforge-run"
# what a run writes at its top level: only these are ever replaced, and only in a run's own folder
RUN_NAMES = ("source.onnx", "checkpoint", "checkpoint.sha256", "model.onnx", "metrics.json", "artifacts", "onnx")


class RunFolder:
    def __init__(self, path):
        self.path = Path(path)
        self.checkpoint = self.path / "checkpoint"
        self.metrics = self.path / "metrics.json"
        self.model = self.path / "model.onnx"
        self.source = self.path / "source.onnx"
        self._lock_fd = None
        self._created = False
        self.mode = file_mode()

    def __str__(self) -> str:
        return str(self.path)

    # -- holding the folder ----------------------------------------------------------------------
    @contextlib.contextmanager
    def held(self, *, create: bool, overwrite: bool = False):
        """Lock the folder for one run (creating it if ``create``); on an error, a folder this run
        created and that holds no checkpoint yet is removed again. A folder onnxforge did not
        write is refused (see the module docstring; ``overwrite`` writes beside its files)."""
        if self.path.is_symlink() and not self.path.exists():
            raise CheckpointError(f"--out '{self.path}' is a link to '{os.readlink(self.path)}', which does not exist")
        if not self.path.exists():
            if not create:
                raise CheckpointError(f"run folder '{self.path}' does not exist")
            with self.writing("the run folder"):
                self.path.mkdir(parents=True)
            self._created = True  # the marker is written once the folder is locked
        elif not self.path.is_dir():
            raise CheckpointError(f"--out '{self.path}' is a file, not a run folder")
        else:
            self.claim(overwrite)
        try:
            self._lock()
            if not self.is_marked():
                self.write_bytes(self.path / MARKER, b"onnxforge run folder\n", MARKER)
            yield self
        except BaseException:
            if self._created and not self.checkpoint.exists():
                self._unlock()
                shutil.rmtree(self.path, ignore_errors=True)
            raise
        finally:
            self._unlock()

    def is_marked(self) -> bool:
        marker = self.path / MARKER
        return marker.is_file() and not marker.is_symlink()

    def _is_legacy_run(self) -> bool:
        """A run written before the marker: its checkpoint beside the checkpoint's digest record."""
        return all((self.path / n).is_file() and not (self.path / n).is_symlink()
                   for n in ("checkpoint", "checkpoint.sha256"))

    def claim(self, overwrite: bool) -> None:
        """Refuse an existing folder that is not onnxforge's (see the module docstring)."""
        if self.is_marked() or self._is_legacy_run():
            return
        try:
            others = sorted(p.name for p in self.path.iterdir() if p.name != ".lock")
        except OSError as exc:
            raise CheckpointError(f"--out '{self.path}' cannot be read ({exc.strerror or exc})") from None
        if not others:
            return
        shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
        if not overwrite:
            raise CheckpointError(f"--out '{self.path}' is not a run folder onnxforge wrote (it holds {shown}); "
                                  "choose a new or empty folder, or pass --overwrite to write the run beside its files")
        clash = [n for n in RUN_NAMES if (self.path / n).exists() or (self.path / n).is_symlink()]
        if clash:
            raise CheckpointError(f"--out '{self.path}' is not a run folder onnxforge wrote, and its "
                                  f"{', '.join(clash)} would be replaced; --overwrite never replaces files onnxforge "
                                  "did not write: move them or choose another --out")

    def _lock(self) -> None:
        lock = self.path / ".lock"
        with self.writing("its lock file"):
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CheckpointError(f"run folder '{self.path}' is in use by another run (pid {holder}); "
                                      "wait for it to end or choose another --out") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    @contextlib.contextmanager
    def writing(self, what: str):
        """Turn an OS error while writing ``what`` into one line that says the last checkpoint stays."""
        try:
            yield
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if exc.errno == errno.ENOSPC:
                reason = "the disk is full"
            elif exc.errno == errno.EROFS:
                reason = "the file system is read-only"
            kept = "; the last good checkpoint is kept" if self.checkpoint.is_file() else ""
            raise CheckpointError(f"run folder '{self.path}': cannot write {what} ({reason}){kept}") from None

    # -- the files -------------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def is_empty(self) -> bool:
        return not any(p.name not in (".lock", MARKER) for p in self.path.iterdir())

    def verify(self, *, trust_unrecorded: bool = False) -> None:
        try:
            verify_checkpoint(self.checkpoint, trust_unrecorded=trust_unrecorded)
        except OSError as exc:
            raise CheckpointError(f"checkpoint '{self.checkpoint}' cannot be read ({exc.strerror or exc})") from None

    def save_checkpoint(self, write) -> None:
        """``write(tmp_path)`` writes the checkpoint's bytes; see :mod:`.checkpoint_file`."""
        remove_stale_temporaries(self.checkpoint)
        try:
            with self.writing("the checkpoint"):
                save_checkpoint(write, self.checkpoint, self.mode)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend's native writer (ORT raises RuntimeError)
            raise CheckpointError(f"run folder '{self.path}': cannot write the checkpoint "
                                  f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                                  + ("; the last good checkpoint is kept" if self.has_checkpoint() else "")) from None

    def write_bytes(self, path: Path, data: bytes, what: str) -> None:
        with self.writing(what):
            atomic_write_bytes(path, data)
            os.chmod(path, self.mode)

    def write_model(self, model: ModelProto, path: Path | None = None) -> Path:
        path = Path(path or self.model)
        with self.writing(path.name):
            save_model(model, path)
            if path.parent == self.path:
                os.chmod(path, self.mode)
        return path

    def write_metrics(self, doc: dict) -> None:
        self.write_bytes(self.metrics, json.dumps(doc, indent=2).encode(), "metrics.json")

    def read_metrics(self) -> dict:
        if not self.metrics.is_file():
            return {}
        try:
            doc = json.loads(self.metrics.read_text())
        except (ValueError, OSError, RecursionError):
            raise CheckpointError(f"'{self.metrics}' is not valid JSON") from None
        if not isinstance(doc, dict):
            raise CheckpointError(f"'{self.metrics}' holds no run record")
        return doc
