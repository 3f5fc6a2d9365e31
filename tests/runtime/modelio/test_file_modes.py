"""Files handed to a user follow the umask like any tool's (0644 under 022, 0664 under 002), atomic
writes included: ``mkstemp``'s private 0600 is only for the temporary name."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime.modelio.files import atomic_write_bytes, file_mode, save_model


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_writes_and_saved_models_follow_the_umask(tmp_path, umask):
    assert file_mode() == 0o666 & ~umask
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    save_model(mlp(4, [3], 2), tmp_path / "m.onnx")
    save_model(mlp(64, [128], 10), tmp_path / "big.onnx", external_data=True)
    for name in ("a.bin", "m.onnx", "big.onnx", "big.onnx.data"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_cli_outputs_follow_the_umask(tmp_path, cli_run, digits):
    old = os.umask(0o022)
    try:
        (x, y), _ = digits
        np.savez(tmp_path / "d.npz", x=x[:40], y=y[:40])
        assert cli_run("build", "mlp", "--inputs", 64, "--hidden", 8, "--classes", 10, "-o", tmp_path / "m.onnx").exit_code == 0
        assert cli_run("infer", tmp_path / "m.onnx", "--input", tmp_path / "d.npz", "-o", tmp_path / "p.npz").exit_code == 0
        assert cli_run("samples", tmp_path / "s", "--quiet").exit_code == 0
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.onnx") == 0o644
    assert _mode(tmp_path / "p.npz") == 0o644
    written = [p for p in (tmp_path / "s").rglob("*") if p.is_file()]
    assert len(written) > 2000 and {_mode(p) for p in written} == {0o644}
