"""The runtime-compatibility pass: IR version and default opset lowered to what ONNX Runtime accepts."""

from __future__ import annotations

from onnx import ModelProto

from onnxforge.runtime.errors import ModelError
from onnxforge.runtime.modelio.files import default_opset
from onnxforge.runtime.ort.distribution import runtime_info
from onnxforge.runtime.passes.base import FunctionalPass, PassResult, copy_model

__all__ = ["RuntimeCompatible", "make_runtime_compatible"]


def make_runtime_compatible(model: ModelProto, max_ir: int | None = None, max_opset: int | None = None) -> ModelProto:
    """``model`` with IR and default opset the runtime accepts (a new model when changed, ``model``
    itself when it already fits)."""
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
        model = copy_model(model)
        model.ir_version = max_ir
    return model


class RuntimeCompatible(FunctionalPass):
    """The pass of :func:`make_runtime_compatible` (limits of the installed runtime unless given)."""

    name = "runtime-compatible"

    def __init__(self, max_ir: int | None = None, max_opset: int | None = None):
        self.max_ir, self.max_opset = max_ir, max_opset

    def call(self, model: ModelProto) -> PassResult:
        out = make_runtime_compatible(model, self.max_ir, self.max_opset)
        return PassResult(out, out is not model)
