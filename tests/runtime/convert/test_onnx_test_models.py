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
from onnxforge.runtime.passes.fold import fold_constants
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


LIGHT = DATA / "light"


@pytest.mark.parametrize("name", ["squeezenet", "shufflenet", "inception_v1"])
def test_zoo_architectures_with_computed_weights_become_trainable(name, tmp_path):
    """The "light" model-zoo networks in ONNX's test data (opset 9, IR 3) compute every weight
    with ConstantOfShape (some biases are initialisers): those weights are not trainable parameters
    until conversion folds them into initialisers."""
    from onnx.backend.test.runner import Runner

    from onnxforge.runtime import NotTrainableError, Trainer
    from onnxforge.runtime.passes.gradient_form import trainable_parameters

    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    computed = [n for n in model.graph.node if n.op_type == "ConstantOfShape"]
    before = len(trainable_parameters(model))
    assert len(computed) >= 16
    x = next(i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
    feeds = {x.name: Runner.generate_dummy_data(x, seed=0, name=name, random=False)}
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    new, report = upgrade(model)
    assert report["parameters"] == before + len(computed)
    assert "ConstantOfShape" not in {n.op_type for n in new.graph.node}
    got = ort.InferenceSession(new.SerializeToString(), quiet_options()).run(None, feeds)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-6)
    if name == "inception_v1":  # LRN has a gradient in neither backend (ORT training, nor a rule in autodiff)
        with pytest.raises(NotTrainableError, match=r"(cannot compute gradients|no gradient in standard ONNX) "
                                                    r"through: LRN \(n3\)"):
            Trainer(new, tmp_path / "run", progress=False)
        return
    trainer = Trainer(new, tmp_path / "run", progress=False)   # refuses models it cannot differentiate
    statistics = {i for n in new.graph.node if n.op_type == "BatchNormalization" for i in n.input[3:5]}
    assert {n.output[0] for n in computed} - statistics <= set(trainer.trainable)   # now trained
    assert set(trainer.trainable) | statistics >= set(trainable_parameters(new))
    assert report["rewritten"] == (13 if name == "shufflenet" else 0)   # Sum has no gradient: Adds
    if name == "shufflenet":  # really trains: artifacts built, two steps taken (the file's batch is 1)
        start = {k: v.copy() for k, v in trainer.parameters().items()}
        trainer.fit((np.repeat(feeds[x.name], 2, 0), np.array([3, 5])), epochs=1, batch_size=1)
        moved = [k for k, v in trainer.parameters().items() if not np.array_equal(v, start[k])]
        assert "gpu_0/pred_w_0" in moved and len(moved) > 100
