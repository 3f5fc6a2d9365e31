"""Array files whose headers lie (runtime/data/arrays.py): refused in one line before numpy allocates."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest

from onnxforge.runtime.data.arrays import read_npy, read_npz
from onnxforge.runtime.errors import DataError


def _npy_claiming(shape: tuple, body: bytes = b"\0" * 16) -> bytes:
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    header += " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + body


def test_an_npy_claiming_two_to_the_forty_elements_is_refused_before_allocation(tmp_path):
    path = tmp_path / "big.npy"
    path.write_bytes(_npy_claiming((2**40,)))
    with pytest.raises(DataError) as info:
        read_npy(path)
    assert str(info.value) == (f"'{path}': its header declares shape (1099511627776,) of float32 "
                               "(4,398,046,511,104 bytes) but the file holds 16 bytes of data")


def test_an_npz_member_claiming_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", _npy_claiming((2**20, 2**20)))
        archive.writestr("y.npy", _npy_claiming((4,)))
    with pytest.raises(DataError, match=r"^'.*big\.npz': array 'x': its header declares shape \(1048576, 1048576\)"):
        read_npz(path)


def test_a_truncated_npy_and_garbage_are_one_line_errors(tmp_path):
    ok = tmp_path / "ok.npy"
    np.save(ok, np.arange(12, dtype=np.float32).reshape(3, 4))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(ok.read_bytes()[:-8])
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"\x93NUMPY\x09\x00" + b"junk" * 8)
    with pytest.raises(DataError, match="holds 40 bytes of data"):
        read_npy(cut)
    with pytest.raises(DataError, match="version 9.0 is not read here"):
        read_npy(garbage)


def test_honest_files_read_as_numpy_writes_them(tmp_path):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "a.npz", x=a, y=np.array([1, 2], dtype=np.int64))
    np.testing.assert_array_equal(read_npy(tmp_path / "a.npy"), a)
    arrays = read_npz(tmp_path / "a.npz")
    assert sorted(arrays) == ["x", "y"]
    np.testing.assert_array_equal(arrays["x"], a)
    np.testing.assert_array_equal(arrays["y"], [1, 2])


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="holds Python objects"):
        read_npy(path)
