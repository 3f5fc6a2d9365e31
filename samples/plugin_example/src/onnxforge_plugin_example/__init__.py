"""An example third-party onnxforge plugin.

- ``onnxforge_example.Squareplus``: ``Y = (X + sqrt(X*X + b)) / 2``. Its native C kernel
  (``squareplus.c``, built at install time) serves; its ONNX function body trains.
- ``onnxforge_example.RowMedian``: the median of each row, ``[N, D] -> [N, 1]``, a numpy kernel
  (inference only).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import numpy as np
from onnx import helper

from onnxforge.plugins import Op, Plugin

DOMAIN = "onnxforge_example"
_HERE = Path(__file__).resolve().parent


def _library() -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = _HERE / f"_squareplus{suffix}"
        if path.is_file():
            return path
    return None


def squareplus_reference(x: np.ndarray, b: float = 4.0) -> np.ndarray:
    return ((x + np.sqrt(x * x + b)) / 2).astype(np.float32)


def row_median(x: np.ndarray) -> np.ndarray:
    return np.median(x, axis=-1, keepdims=True).astype(np.float32)


def plugin() -> Plugin:
    n = helper.make_node
    b_const = n("Constant", [], ["b"])
    b_const.attribute.append(helper.make_attribute_ref("value_float", helper.AttributeProto.FLOAT))
    b_const.attribute[0].ref_attr_name = "b"
    squareplus = Op(
        DOMAIN, "Squareplus", ["X"], ["Y"], attributes={"b": 4.0},
        body=[
            n("Mul", ["X", "X"], ["x2"]),
            b_const,
            n("Add", ["x2", "b"], ["s"]),
            n("Sqrt", ["s"], ["root"]),
            n("Add", ["X", "root"], ["sum"]),
            n("Constant", [], ["half"], value_float=0.5),
            n("Mul", ["sum", "half"], ["Y"]),
        ],
        library=_library(),
        doc="Squareplus: Y = (X + sqrt(X*X + b)) / 2, a smooth ReLU (native kernel, trainable body).",
    )
    median = Op(DOMAIN, "RowMedian", ["X"], ["Y"], kernel=row_median,
                doc="The median of each row: [N, D] -> [N, 1] (Python kernel, inference only).")
    return Plugin("example", [squareplus, median], version="0.1.0",
                  description="onnxforge's example third-party plugin")
