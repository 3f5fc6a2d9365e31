"""Real old files: the models PyTorch once exported for ONNX's own backend tests (opset 6, IR 3,
shipped inside the onnx package with their recorded inputs and PyTorch's outputs). ONNX Runtime
1.19 refuses about a third of them as they are; after conversion every one runs and gives
PyTorch's recorded outputs, and the PyTorch interpreter module gives them too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from onnxforge.runtime.convert import SUPPORTED_OPS
from onnxforge.runtime.convert._fold import fold_constants
from onnxforge.runtime.convert.onnx_upgrade import upgrade
from onnxforge.runtime.convert.to_torch import to_torch_module

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
MODELS = sorted(p.parent for p in (DATA / "pytorch-converted").glob("*/model.onnx")) + \
         sorted(p.parent for p in (DATA / "pytorch-operator").glob("*/model.onnx"))


def case(folder: Path):
    model = onnx.load(str(folder / "model.onnx"))
    data = folder / "test_data_set_0"
    inputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("input_*.pb"))]
    outputs = [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in sorted(data.glob("output_*.pb"))]
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    return model, dict(zip(names, inputs)), outputs


def quiet_options():
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return options


def refused(model, feeds) -> bool:
    try:
        ort.InferenceSession(model.SerializeToString(), quiet_options()).run(None, feeds)
    except Exception:  # noqa: BLE001
        return True
    return False


def test_the_collection_is_there_and_holds_files_the_runtime_refuses():
    assert len(MODELS) >= 100
    old = [f for f in MODELS if refused(*case(f)[:2])]
    assert len(old) >= 30   # 34 with onnx 1.23 and ORT 1.19.2


@pytest.mark.parametrize("folder", MODELS, ids=[f.name for f in MODELS])
def test_converted_model_gives_pytorchs_recorded_outputs(folder):
    model, feeds, expected = case(folder)
    new, report = upgrade(model)
    assert report["to_opset"] == 17 and new.ir_version <= 10
    got = ort.InferenceSession(new.SerializeToString(), quiet_options()).run(None, feeds)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, equal_nan=True)

    prepared, _ = upgrade(model, fold=False)
    if not {n.op_type for n in prepared.graph.node} <= SUPPORTED_OPS:
        pytest.fail(f"ops outside the PyTorch set: {sorted({n.op_type for n in prepared.graph.node} - SUPPORTED_OPS)}")
    params = {t.name for t in prepared.graph.initializer if t.data_type == 1 and len(t.dims) > 0}
    module = to_torch_module(fold_constants(prepared, keep=params)[0]).eval()
    with torch.no_grad():
        out = module(*[torch.from_numpy(v) for v in feeds.values()])
    out = out if isinstance(out, tuple) else (out,)
    for a, b in zip(out, expected):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-3, atol=1e-4, equal_nan=True)
