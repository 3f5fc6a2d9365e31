from __future__ import annotations

import sys

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


@pytest.mark.artifacts
def test_training_api_imports_without_torch():
    import subprocess
    import sys

    code = ("import sys; from onnxforge.runtime.ort.distribution import training_api; training_api(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_runtime_without_the_training_api_says_which_backend_trains(monkeypatch):
    """The maintained onnxruntime (CPython 3.13's) has no onnxruntime.training: the artifacts backend
    is refused in one line that names the runtime, what the backend needs and the backend that trains."""
    from onnxforge.runtime.training.backends import backend_class

    monkeypatch.setitem(sys.modules, "onnxruntime.training", None)  # as if not installed, on either leg
    _ort.training_api.cache_clear()
    try:
        with pytest.raises(RuntimeUnavailableError) as info:
            backend_class("artifacts")
    finally:
        _ort.training_api.cache_clear()  # the next call, after monkeypatch's undo, imports it again
    message = str(info.value)
    assert message.startswith(f"training backend 'artifacts' cannot run here: the installed ONNX Runtime "
                              f"({_ort.runtime_info().distribution} {_ort.ort().__version__}) has no training API (")
    assert message.endswith("); the artifacts backend needs onnxruntime-training (CPython 3.10-3.12: the `cpu` or "
                            "`cuda-artifacts` extra), the onnx backend (`--backend onnx`) trains on this runtime")
    assert "\n" not in message


def test_the_runtime_limits_are_what_it_loads():
    """max_ir_version and max_opset (a table for ONNX Runtime 1.19-1.22, asked of newer ones) against
    sessions of a Relu model: loaded at the limits, refused one above."""
    from onnx import TensorProto, helper

    info = _ort.runtime_info()

    def loads(ir_version, opset):
        io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in ("a", "b")]
        model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["a"], ["b"])], "g", io[:1], io[1:]),
                                  opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version
        try:
            _ort.ort().InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001
            return False
        return True

    assert loads(info.max_ir_version, info.max_opset)
    assert not loads(info.max_ir_version + 1, 17)
    assert not loads(info.max_ir_version, info.max_opset + 1)
