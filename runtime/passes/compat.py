"""The runtime-compatibility pass: IR version and default opset lowered to what ONNX Runtime accepts."""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.files import default_opset
from onnxforge.runtime.ort.distribution import runtime_info


def make_runtime_compatible(model: ModelProto, max_ir: int | None = None, max_opset: int | None = None) -> ModelProto:
    """Return ``model`` (a copy when changed) with IR and default opset the runtime accepts."""
    if max_ir is None or max_opset is None:
        info = runtime_info()
        max_ir = info.max_ir_version if max_ir is None else max_ir
        max_opset = info.max_opset if max_opset is None else max_opset
    opset = default_opset(model)
    if opset > max_opset:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, max_opset)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"the model uses opset {opset}, the installed ONNX Runtime accepts at most {max_opset}, "
                f"and converting it down failed: {str(exc).splitlines()[0]}"
            ) from None
    if model.ir_version > max_ir:
        copy = ModelProto()
        copy.CopyFrom(model)
        copy.ir_version = max_ir
        model = copy
    return model
