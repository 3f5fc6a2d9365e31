from __future__ import annotations

import pytest

from onnxforge.runtime import ConfigError, DeviceError, RuntimeUnavailableError, resolve_device
from onnxforge.runtime.ort import distribution as _ort
from onnxforge.runtime.ort.device import cuda_works


def test_cpu_and_auto():
    assert resolve_device("cpu").providers == ("CPUExecutionProvider",)
    auto = resolve_device("auto")
    ok, why = cuda_works()
    assert auto.name == ("cuda" if ok else "cpu")
    if not ok:
        assert auto.reason == f"auto chose the CPU: {why}"


def test_cuda_requested_without_a_working_provider():
    ok, why = cuda_works()
    if ok:
        assert resolve_device("cuda").name == "cuda"
    else:
        with pytest.raises(DeviceError, match="device 'cuda' was requested but"):
            resolve_device("cuda")


def test_unknown_device():
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda; got 'tpu'"):
        resolve_device("tpu")


def test_two_distributions_are_reported_plainly(monkeypatch):
    monkeypatch.setattr(_ort, "installed_distributions", lambda: ["onnxruntime-gpu", "onnxruntime-training-cpu"])
    with pytest.raises(RuntimeUnavailableError) as info:
        _ort.check_single_distribution()
    assert "several ONNX Runtime distributions are installed in this environment " \
           "(onnxruntime-gpu, onnxruntime-training-cpu)" in str(info.value)
    assert "pip uninstall -y onnxruntime-gpu onnxruntime-training-cpu" in str(info.value)


def test_training_api_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; from onnxforge.runtime.ort.distribution import training_api; training_api(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
