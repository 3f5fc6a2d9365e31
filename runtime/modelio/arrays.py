"""Reading ``.npy`` arrays and ``.npz`` members without trusting their headers.

numpy allocates what an array's header declares before it reads a byte, so a 128-byte ``.npy`` that
claims 2^40 elements asks for terabytes. Each array's header is read first and its declared size
compared with the bytes the file (or the zip member) really holds; pickled (object) arrays are never
loaded. An archive that holds two arrays of one name is refused, and ``max_bytes`` bounds what all
its arrays together may declare (``weights import``: what the model's own weights take). Every
failure is one :class:`DataError` line naming the file and the array. (In :mod:`.modelio`, the
lowest layer that reads arrays, so the weights files are read through it too;
``onnxforge.runtime.data.arrays`` is the same reader.)
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

from onnxforge.runtime.errors import DataError, first_line

__all__ = ["read_npy", "read_npz"]

_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _checked_header(fh, available: int, where: str) -> int:
    """Read the magic and header at ``fh``'s position; refuse what the bytes after it cannot hold.
    Returns the bytes the array's data takes."""
    start = fh.tell()
    try:
        version = np.lib.format.read_magic(fh)
        reader = _HEADER_READERS.get(version)
        if reader is None:
            raise DataError(f"{where}: .npy format version {version[0]}.{version[1]} is not read here "
                            "(versions 1.0 and 2.0 are)")
        shape, _, dtype = reader(fh)
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{where} is not a readable .npy array ({first_line(exc)})") from None
    if dtype.hasobject:
        raise DataError(f"{where} holds Python objects (pickled data), which onnxforge never loads; "
                        "save numeric arrays")
    needed = math.prod(shape) * dtype.itemsize
    held = available - (fh.tell() - start)
    if needed > held:
        raise DataError(f"{where}: its header declares shape {tuple(shape)} of {dtype} ({needed:,} bytes) "
                        f"but the file holds {max(held, 0):,} bytes of data")
    return needed


def _regular(path: Path) -> None:
    """Refuse what is not a regular file before opening it (a FIFO would block the read forever)."""
    if path.exists() and not path.is_file():
        raise DataError(f"'{path}' is not a regular file")


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of an ``.npy`` file, its header checked against the file's size first."""
    path = Path(path)
    where = f"'{path}'"
    _regular(path)
    try:
        with open(path, "rb") as fh:
            _checked_header(fh, os.fstat(fh.fileno()).st_size, where)
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        raise DataError(f"{where} is not a readable .npy file ({first_line(exc)})") from None


def read_npz(path: str | os.PathLike, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive by name, each member's header checked against its size
    first; at most ``max_bytes`` of array data in all, when given."""
    path = Path(path)
    _regular(path)
    try:
        with zipfile.ZipFile(path) as archive:
            seen, total = set(), 0
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                if name in seen:
                    raise DataError(f"'{path}' holds two arrays named '{name[:80]}'; an archive names each array once")
                seen.add(name)
                with archive.open(info) as member:
                    total += _checked_header(member, info.file_size, f"'{path}': array '{name}'")
                if max_bytes is not None and total > max_bytes:
                    raise DataError(f"'{path}': its arrays declare more than {max_bytes:,} bytes, all that is "
                                    f"expected here (array '{name}' passes it)")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, MemoryError, zipfile.LargeZipFile,
            NotImplementedError, RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise DataError(f"'{path}' is not a readable .npz file ({first_line(exc)})") from None
