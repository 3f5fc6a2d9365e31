"""Choosing the device: ``"auto" | "cpu" | "cuda"`` and the execution providers behind it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from onnxforge.runtime.ort.distribution import ort, preload_cuda_libraries, runtime_info
from onnxforge.runtime.errors import ConfigError, DeviceError

__all__ = ["Device", "resolve_device", "cuda_works"]

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Device:
    """A resolved device: its name, the ORT providers to use, and why it was chosen."""

    name: str  # "cpu" or "cuda"
    providers: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return self.name


def _probe_model_bytes() -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model.SerializeToString()


@lru_cache(maxsize=1)
def cuda_works() -> tuple[bool, str]:
    """Whether the CUDA provider really runs a model here (ORT falls back silently otherwise)."""
    info = runtime_info()
    if "CUDAExecutionProvider" not in info.providers:
        return False, f"{info.distribution} {info.version} has no CUDA execution provider"
    missing = [name for name, path in preload_cuda_libraries().items() if path is None]
    rt = ort()
    try:
        options = rt.SessionOptions()
        options.log_severity_level = 4
        sess = rt.InferenceSession(
            _probe_model_bytes(), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        import numpy as np

        sess.run(None, {"x": np.ones(1, np.float32)})
        if "CUDAExecutionProvider" not in sess.get_providers():
            extra = f" (CUDA libraries not found: {', '.join(missing)})" if missing else ""
            return False, "the CUDA execution provider did not start" + extra
    except Exception as exc:  # noqa: BLE001 - any failure means CUDA is not usable
        return False, f"the CUDA execution provider failed: {str(exc).splitlines()[0]}"
    return True, "the CUDA execution provider works"


def resolve_device(device: str | Device = "auto") -> Device:
    """Resolve ``device`` to a :class:`Device`; ``"auto"`` takes CUDA only when it really works."""
    if isinstance(device, Device):
        return device
    name = str(device).lower()
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    cpu = Device("cpu", ("CPUExecutionProvider",), "the CPU was requested")
    if name == "cpu":
        return cpu
    ok, why = cuda_works()
    if ok:
        return Device("cuda", ("CUDAExecutionProvider", "CPUExecutionProvider"), why)
    if name == "cuda":
        raise DeviceError(f"device 'cuda' was requested but {why}; use --device cpu or install onnxforge[cuda]")
    return Device("cpu", ("CPUExecutionProvider",), f"auto chose the CPU: {why}")
