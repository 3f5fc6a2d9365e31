"""Checkpoint files that survive ``kill -9`` at any moment.

A save writes ``.NAME.tmp`` (flushed and synced), records its SHA-256 next to the digests already
recorded in ``NAME.sha256`` (itself replaced atomically), renames the new file over ``NAME``,
syncs the folder, then leaves only the new digest in ``NAME.sha256``. At every instant ``NAME``
is a complete checkpoint (the previous one until the rename) whose digest is recorded, so a
resume can tell a complete checkpoint from a damaged one: a digest that matches nothing recorded
is an error, never a silent fresh start.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.modelio.files import fsync_folder, atomic_write_bytes

__all__ = ["save_checkpoint", "verify_checkpoint", "digest_path"]


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded(path: Path) -> list[str]:
    try:
        return [line.strip() for line in digest_path(path).read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{digest_path(path)}' cannot be read: {exc}") from None


def save_checkpoint(write, path: Path) -> None:
    """``write(tmp_path)`` writes a checkpoint; it becomes ``path`` as described above."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    new = _digest(tmp)
    recorded = _recorded(path)[-2:]
    atomic_write_bytes(digest_path(path), "\n".join([*recorded, new, ""]).encode())
    os.replace(tmp, path)
    fsync_folder(path.parent)
    atomic_write_bytes(digest_path(path), f"{new}\n".encode())


def verify_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete checkpoint this run wrote.

    A checkpoint without a ``.sha256`` record (copied alone, or from an older onnxforge) is
    accepted here and left to ONNX Runtime's own format check."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    recorded = _recorded(path)
    if recorded and _digest(path) not in recorded:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: its SHA-256 matches none recorded in '{digest_path(path).name}' "
            "(the file was changed or damaged after it was written); restore it or start again with --overwrite"
        )
