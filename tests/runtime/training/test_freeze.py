from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxforge.graphs import mlp
from onnxforge.runtime import ConfigError, NotTrainableError, Trainer


def test_frozen_parameters_stay_bit_for_bit(tmp_path, digits):
    (x, y), _ = digits
    model = mlp(64, [32, 16], 10, seed=5)
    trainer = Trainer(model, tmp_path / "run", lr=1e-2, freeze=["fc1.*", "fc2.bias"], device="cpu", progress=False)
    assert trainer.frozen == ["fc1.weight", "fc1.bias", "fc2.bias"]
    before = trainer.parameters()
    trainer.fit((x[:256], y[:256]), epochs=2, batch_size=32)
    after = trainer.parameters()
    for name in trainer.frozen:
        assert after[name].tobytes() == before[name].tobytes(), name
    for name in trainer.trainable:
        assert not np.array_equal(after[name], before[name]), name
    from onnx import numpy_helper

    from onnxforge.runtime.modelio.files import load_model

    exported = {t.name: numpy_helper.to_array(t) for t in load_model(tmp_path / "run" / "model.onnx").graph.initializer}
    assert exported["fc1.weight"].tobytes() == before["fc1.weight"].tobytes()
    np.testing.assert_array_equal(exported["fc3.weight"], after["fc3.weight"])


def test_freeze_pattern_matching_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"freeze pattern 'conv\*' matches no parameter; parameters are: fc1.weight"):
        Trainer(mlp(4, [3], 2), tmp_path, freeze=["conv*"], device="cpu")


def test_everything_frozen(tmp_path):
    with pytest.raises(NotTrainableError, match=r"no trainable float parameters \(every one is frozen\)"):
        Trainer(mlp(4, [3], 2), tmp_path, freeze=["*"], device="cpu")


def test_freezing_a_batch_norm_holds_its_running_statistics_too(tmp_path, digits):
    from onnx import numpy_helper

    from onnxforge.graphs import convnet
    from onnxforge.samples import load_digits

    (x, y), _ = load_digits("images")
    model = convnet((1, 8, 8), channels=(4,), classes=10, batchnorm=True, seed=1)
    start = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    held = Trainer(model, tmp_path / "held", freeze=["bn1.*"], device="cpu", progress=False, threads=1)
    assert held.frozen == ["bn1.scale", "bn1.bias"] and held.plan.held == ("bn1.running_mean", "bn1.running_var")
    held.fit((x[:128], y[:128]), epochs=2, batch_size=32)
    exported = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "held" / "model.onnx")).graph.initializer}
    for name in ("bn1.scale", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        assert exported[name].tobytes() == start[name].tobytes(), name
        assert held.parameters()[name].tobytes() == start[name].tobytes(), name
    assert not np.array_equal(exported["conv1.weight"], start["conv1.weight"])
    resumed = Trainer(model, tmp_path / "held", freeze=["bn1.*"], device="cpu", progress=False, threads=1)
    resumed.fit((x[:128], y[:128]), epochs=3, batch_size=32, resume=True)  # the checkpoint holds them too
    assert resumed.parameters()["bn1.running_var"].tobytes() == start["bn1.running_var"].tobytes()
    free = Trainer(model, tmp_path / "free", device="cpu", progress=False, threads=1)
    free.fit((x[:128], y[:128]), epochs=1, batch_size=32)
    assert not np.array_equal(free.parameters()["bn1.running_mean"], start["bn1.running_mean"])  # they do move otherwise
