"""Checkpoint files that survive ``kill -9`` at any moment.

A save has the backend write ``NAME`` inside a fresh private folder ``.NAME.XXXXXXXX.tmp`` (created
exclusively with mode 0700, so no link planted in the run folder is ever written through), syncs
it, records its SHA-256 next to the digests already recorded in ``NAME.sha256`` (itself replaced
atomically), renames the new file over ``NAME``, syncs the folder, then leaves only the new digest
in ``NAME.sha256``. At every instant ``NAME`` is a complete checkpoint (the previous one until the
rename) whose digest is recorded, so a resume can tell a complete checkpoint from a damaged one: a
digest that matches nothing recorded is an error, never a silent fresh start; so is a checkpoint
with no record at all, unless the user says to trust it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from onnxforge.runtime.errors import CheckpointError
from onnxforge.runtime.modelio.files import atomic_write_bytes, fsync_folder

__all__ = ["save_checkpoint", "verify_checkpoint", "digest_path", "remove_stale_temporaries"]


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with open(fd, "rb") as fh:
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


def remove_stale_temporaries(path: Path) -> None:
    """Remove what a killed save left (``.NAME.*.tmp``): links are unlinked, never followed."""
    for stale in Path(path).parent.glob(f".{Path(path).name}.*tmp"):
        if stale.is_symlink() or not stale.is_dir():
            stale.unlink(missing_ok=True)
        else:
            shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(write, path: Path, mode: int = 0o644) -> None:
    """``write(tmp_path)`` writes a checkpoint; it becomes ``path`` (file ``mode``) as described above."""
    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = folder / path.name
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        new = _digest(tmp)
        recorded = _recorded(path)[-2:]
        atomic_write_bytes(digest_path(path), "\n".join([*recorded, new, ""]).encode())
        os.chmod(digest_path(path), mode)
        os.replace(tmp, path)
        fsync_folder(path.parent)
        atomic_write_bytes(digest_path(path), f"{new}\n".encode())
        os.chmod(digest_path(path), mode)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def verify_checkpoint(path: Path, *, trust_unrecorded: bool = False) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete checkpoint this run wrote.

    A checkpoint without a ``.sha256`` record (copied alone, the record deleted, or from an older
    onnxforge) cannot be told from a damaged one: it is refused unless ``trust_unrecorded``, and
    then left to the backend's own format check."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    recorded = _recorded(path)
    if not recorded:
        if trust_unrecorded:
            return
        raise CheckpointError(
            f"checkpoint '{path}' has no digest record ('{digest_path(path).name}' is missing or empty), so it "
            "cannot be told from a damaged one; restore the record, or pass --trust-checkpoint to resume from it anyway"
        )
    if _digest(path) not in recorded:
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt: its SHA-256 matches none recorded in '{digest_path(path).name}' "
            "(the file was changed or damaged after it was written); restore it or start again with --overwrite"
        )
