"""Reading ``.npy`` arrays and ``.npz`` members without trusting their headers.

numpy allocates what an array's header declares before it reads a byte, so a 128-byte ``.npy`` that
claims 2^40 elements asks for terabytes. Each array's header is read first and its declared size
compared with the bytes the file (or the zip member) really holds; pickled (object) arrays are never
loaded. Every failure is one :class:`DataError` line naming the file and the array.
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


def _checked_header(fh, available: int, where: str) -> None:
    """Read the magic and header at ``fh``'s position; refuse what the bytes after it cannot hold."""
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


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of an ``.npy`` file, its header checked against the file's size first."""
    path = Path(path)
    where = f"'{path}'"
    try:
        with open(path, "rb") as fh:
            _checked_header(fh, os.fstat(fh.fileno()).st_size, where)
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, MemoryError) as exc:
        raise DataError(f"{where} is not a readable .npy file ({first_line(exc)})") from None


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive by name, each member's header checked against its size first."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as member:
                        _checked_header(member, info.file_size, f"'{path}': array '{info.filename[:-4]}'")
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, MemoryError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({first_line(exc)})") from None
